"""The model-file browser (tui.tensors) driven through Textual's pilot, on real files made here:
a tiny model's state dict saved with torch.save, its legacy-format twin, safetensors, damaged files."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest
import torch
from conftest import settle, text
from textual.widgets import Input, Static, TabbedContent, Tree

from engine.config import RunConfig
from engine.train.run import Run
from tui.app import TorchdeckApp
from tui.browser import BrowserScreen
from tui.dialogs import AskDialog
from tui.tensors import TensorScreen

SIZE = (80, 24)
HOSTILE = "a.[red]x[/red]"


def pilot_test(scenario):
    """Run an async test with asyncio.run: the project has no async plugin for pytest."""

    @functools.wraps(scenario)
    def test(*args, **kwargs) -> None:
        asyncio.run(scenario(*args, **kwargs))

    return test


def state_dict() -> dict[str, torch.Tensor]:
    """A tiny Sequential's weights, a tensor of known values and two hostile names."""
    torch.manual_seed(0)
    weights = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).state_dict()
    weights["extra.values"] = torch.tensor([0.0, 1.0, 2.0, float("nan")])
    weights[HOSTILE] = torch.ones(2)
    weights["b.c\x1bd"] = torch.zeros(3)
    return weights


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(state_dict(), path)
    return path


def tree_of(app) -> Tree:
    return app.screen.query_one("#tree", Tree)


def labels(item) -> list[str]:
    return [str(child.label) for child in item.children]


async def highlight(pilot, *path: str) -> None:
    """Open the tree down ``path`` (one name per level) and put the cursor on its last node."""
    item = tree_of(pilot.app).root
    for name in path:
        item.expand()
        await pilot.pause()
        item = next(child for child in item.children if child.data.name == name)
    tree_of(pilot.app).move_cursor(item)
    await settle(pilot)


def details(app) -> str:
    return text(app.screen.query_one("#stats", Static))


def statistics(app) -> dict[str, float]:
    """min, max, mean and std as the details panel shows them."""
    shown = details(app).split()
    return {key: float(shown[shown.index(key) + 1]) for key in ("min", "max", "mean", "std")}


@pilot_test
async def test_the_tree_shows_module_paths_with_shapes_dtypes_and_totals(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TensorScreen)
        root = tree_of(app).root
        assert [child.data.name for child in root.children] == ["0", "2", "extra", "a", "b"]
        assert root.children[0].is_expanded and labels(root.children[0]) == [
            "weight  8×4 float32  32 · 128 B", "bias  8 float32  8 · 32 B"]
        assert labels(root)[1] == "2  27 · 108 B"
        summary = text(app.screen.query_one("#summary", Static))
        assert "a state dict" in summary and str(model_file) in summary
        assert "7 tensors · 76 parameters · 304 B" in summary
        assert "76 parameters" in details(app) and "7 tensors" in details(app)  # the root: the whole file
        await highlight(pilot, "2")
        assert "2 tensors" in details(app) and "27 parameters" in details(app)


@pilot_test
async def test_a_highlighted_tensor_shows_its_statistics_and_histogram(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await highlight(pilot, "extra", "values")
        shown = details(app).split()
        assert shown[:6] == ["extra.values", "4", "·", "float32", "·", "4"]
        assert statistics(app) == pytest.approx({"min": 0.0, "max": 2.0, "mean": 1.0, "std": (2 / 3) ** 0.5}, abs=1e-4)
        assert "NaN 1 · Inf 0 · zeros 25.0%" in details(app)
        assert app.screen.query_one("Histogram").display


@pilot_test
async def test_a_quick_move_shows_the_statistics_of_the_node_highlighted_last(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = tree_of(app)
        first = tree.root.children[0]
        tree.move_cursor(first.children[0])  # 0.weight, then at once 0.bias
        await pilot.pause()
        tree.move_cursor(first.children[1])
        await settle(pilot)
        assert details(app).startswith("0.bias") and "min" in details(app)


@pilot_test
async def test_hostile_names_are_shown_literally(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        root = tree_of(app).root
        assert labels(root.children[3])[0].startswith("[red]x[/red]  2 float32")
        assert labels(root.children[4])[0].startswith("c\\x1bd  3 float32")
        await highlight(pilot, "a", "[red]x[/red]")
        assert details(app).startswith(HOSTILE + "\n")


@pilot_test
async def test_the_filter_keeps_the_matching_tensors(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        assert isinstance(app.screen, AskDialog)
        app.screen.query_one(Input).value = "*.bias"
        await pilot.press("enter")
        await settle(pilot)
        root = tree_of(app).root
        assert [child.data.name for child in root.children] == ["0", "2"]
        assert [labels(child) for child in root.children] == [
            ["bias  8 float32  8 · 32 B"], ["bias  3 float32  3 · 12 B"]]
        assert "filter '*.bias': 2 shown" in text(app.screen.query_one("#summary", Static))


@pytest.mark.parametrize("content, message", [
    (b"hello, not a model", "is not a model file torchdeck can read"),
    (b"PK\x03\x04" + b"\0" * 64, "is damaged or not a PyTorch file"),
])
@pilot_test
async def test_a_damaged_file_is_a_message_in_place(tmp_path, content, message):
    (tmp_path / "bad.pt").write_bytes(content)
    app = TorchdeckApp(inspect=tmp_path / "bad.pt")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = text(app.screen.query_one("#message", Static))
        assert message in shown and str(tmp_path / "bad.pt") in shown
        assert "\n" not in str(app.screen.query_one("#message", Static).content)
        assert not app.screen.query_one(TabbedContent).display
        await pilot.press("slash")  # nothing to filter: nothing happens
        assert isinstance(app.screen, TensorScreen) and app.is_running
        await pilot.press("q")
    assert app.return_code == 0


def external_onnx(path: Path) -> Path:
    """An ONNX model whose one weight lives in an external data file (which torchdeck never reads)."""
    import numpy
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(numpy.arange(4, dtype=numpy.float32).reshape(2, 2), "fc.weight")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    onnx.save_model(helper.make_model(graph), path, save_as_external_data=True, location="weights.data",
                    size_threshold=0)
    return path


@pilot_test
async def test_values_a_file_does_not_hold_readably_say_why(tmp_path):
    app = TorchdeckApp(inspect=external_onnx(tmp_path / "model.onnx"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await highlight(pilot, "fc", "weight")
        assert "fc.weight: its values cannot be read" in details(app)
        assert not app.screen.query_one("Histogram").display
        app.screen.query_one(TabbedContent).active = "file"
        await pilot.pause()
        facts = text(app.screen.query_one("#facts", Static))
        assert "external data files" in facts and "inputs\nx  [1, 2]  float32" in facts


@pilot_test
async def test_a_safetensors_file_opens_too(tmp_path):
    from safetensors.torch import save_file

    save_file({"layer.weight": torch.arange(6.0).reshape(2, 3)}, tmp_path / "model.safetensors")
    app = TorchdeckApp(inspect=tmp_path / "model.safetensors")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await highlight(pilot, "layer", "weight")
        assert "a safetensors file" in text(app.screen.query_one("#summary", Static))
        assert statistics(app) == pytest.approx({"min": 0, "max": 5, "mean": 2.5, "std": (35 / 12) ** 0.5}, abs=1e-4)
        assert "zeros 16.7%" in details(app)


@pilot_test
async def test_the_browser_opens_a_file_and_a_runs_checkpoint_and_q_goes_back(model_file, tmp_path):
    out = tmp_path / "runs"
    Run.new(RunConfig.for_task("iris", epochs=1, out=str(out), name="done")).start().wait()
    app = TorchdeckApp(out=out, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")
        assert isinstance(app.screen, AskDialog)
        app.screen.query_one(Input).value = str(tmp_path / "missing.pt")
        await pilot.press("enter")
        assert "no such file" in text(app.screen.query_one("#error", Static))
        app.screen.query_one(Input).value = str(model_file)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TensorScreen) and tree_of(app).root.children
        await pilot.press("q")
        assert isinstance(app.screen, BrowserScreen)

        await pilot.press("t")  # the highlighted run's checkpoint
        await settle(pilot)
        assert isinstance(app.screen, TensorScreen)
        summary = text(app.screen.query_one("#summary", Static))
        assert "a torchdeck checkpoint" in summary and "last.pt" in summary
        app.screen.query_one(TabbedContent).active = "file"
        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen) and app.is_running


@pilot_test
async def test_q_on_the_tensors_of_a_file_opened_alone_leaves_the_app(model_file):
    app = TorchdeckApp(inspect=model_file)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")  # the filter's dialog: escape closes it, q is typed into it
        await pilot.press("q", "escape")
        assert isinstance(app.screen, TensorScreen) and app.screen.pattern == ""
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


def test_browse_opens_a_model_file_or_an_index_folder_and_otherwise_the_runs(monkeypatch, model_file, tmp_path):
    from typer.testing import CliRunner

    import cli.main

    opened: list[dict] = []
    monkeypatch.setattr(cli.main, "run_app", lambda **options: opened.append(options))
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text("{}")
    for path in (model_file, tmp_path / "sharded", tmp_path):
        assert CliRunner().invoke(cli.main.app, ["browse", str(path)]).exit_code == 0
    assert opened == [{"out": tmp_path, "inspect": model_file}, {"out": tmp_path, "inspect": tmp_path / "sharded"},
                      {"out": tmp_path, "browse": True}]
