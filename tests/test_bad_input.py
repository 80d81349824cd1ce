"""Bad input: every mistake a user can make is one clear line and exit 2, never a traceback.

Property tests (hypothesis) throw values at every flag and config key of ``torchdeck train`` and
at ``predict``'s inputs, in this process: training itself is replaced by an ``Accepted``
exception, so an input either passes every check or is refused, fast. File tests hand every
command damaged, crafted and mismatched checkpoints, odd images and image folders. Whatever a
crafted checkpoint would run when unpickled never runs, at any entry point.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from conftest import HOSTILE_CLASSES, Payload, Result, hostile_csv, reading_commands
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cli.main import main
from engine.config import RunConfig, catalog, option_names
from engine.store import checkpoint, rundir
from engine.text import printable
from engine.train.run import Run

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class Accepted(BaseException):
    """Raised where training would start: the input passed every check (a BaseException, so that
    the CLI's last-resort handler of bugs lets it through)."""


def torchdeck(*args) -> Result:
    """``torchdeck ARGS`` in this process; exit code ``accepted`` when training would start."""
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["torchdeck", *map(str, args)]
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        except Accepted:
            code = "accepted"
        finally:
            sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


def refused(result: Result, *names: str) -> str:
    """The one error line of a refused input; it names one of ``names`` when any are given."""
    assert "Traceback" not in result.err + result.out, result.err
    assert result.code == 2, (result.code, result.err, result.out[-300:])
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    assert not names or any(name in lines[0] for name in names), lines[0]
    return lines[0]


def accepted_or_refused(result: Result) -> None:
    if result.code != "accepted":
        refused(result)


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Run the CLI from an empty folder, with training replaced by ``Accepted``."""
    monkeypatch.chdir(tmp_path)

    def reached(*args, **kwargs):
        raise Accepted

    monkeypatch.setattr(Run, "new", reached)
    monkeypatch.setattr(Run, "resume", reached)


# --- flags: numbers, names, layer lists, anything -------------------------------------------


def below(limit, inclusive=False):
    numbers = st.floats(max_value=limit, allow_nan=False)
    return numbers if inclusive else numbers.filter(lambda number: number < limit)  # not -0.0 for 0


def above(limit, inclusive=False):
    numbers = st.floats(min_value=limit, allow_nan=False)
    return numbers if inclusive else numbers.filter(lambda number: number > limit)


OUT_OF_RANGE = {  # flag: numbers its option refuses
    "--lr": below(0, inclusive=True),
    "--dropout": below(0) | above(1, inclusive=True),
    "--momentum": below(0) | above(1, inclusive=True),
    "--weight-decay": below(0),
    "--gamma": below(0, inclusive=True) | above(1),
    "--min-delta": below(0),
    "--val-fraction": below(0, inclusive=True) | above(0.5, inclusive=True),
    "--test-fraction": below(0, inclusive=True) | above(0.5, inclusive=True),
    "--image-size": st.integers(max_value=7),
    "--step-size": st.integers(max_value=0),
    "--scheduler-patience": st.integers(max_value=-1),
    "--batch-size": st.integers(max_value=0),
    "--epochs": st.integers(max_value=0),
    "--patience": st.integers(max_value=-1),
    "--seed": st.integers(max_value=-1),
}
WHOLE = {"--image-size", "--step-size", "--scheduler-patience", "--batch-size", "--epochs", "--patience", "--seed"}
# Text as a shell can pass it: no NUL bytes, no lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)


def option(flag: str) -> str:
    return flag[2:].replace("-", "_")


def converts(text: str, kind) -> bool:
    try:
        kind(text)
    except (ValueError, OverflowError):
        return False
    return True


@pytest.mark.parametrize("flag", OUT_OF_RANGE)
@PROPERTY
@given(data=st.data())
def test_numbers_out_of_range_are_refused_by_name(no_training, flag, data):
    value = data.draw(OUT_OF_RANGE[flag])
    refused(torchdeck("train", flag, value), f"{option(flag)}: ")


@pytest.mark.parametrize("flag", OUT_OF_RANGE)
@PROPERTY
@given(data=st.data())
def test_numbers_of_the_wrong_type_are_refused_by_name(no_training, flag, data):
    whole = flag in WHOLE
    value = data.draw(st.one_of(
        TEXT.filter(lambda text: not converts(text, int if whole else float)),
        st.sampled_from(["2.5", "1e3", "0x10"] if whole else ["nan", "-inf", "inf", "1e999", "NaN"]),
    ))
    refused(torchdeck("train", flag, value), flag, f"{option(flag)}: ")


CHOICES = {  # flag: the names it accepts (some may still be refused for not fitting the task)
    "--task": set(catalog("task")),
    "--model": set(catalog("model")),
    "--optimizer": set(catalog("optimizer")),
    "--scheduler": set(catalog("scheduler")),
    "--loss": {"auto", *catalog("loss")},
    "--activation": set(catalog("activation")),
    "--monitor": {"auto", "val_loss", "accuracy", "mae", "rmse", "r2"},
    "--device": {"auto", "cpu", "mps", "cuda", "cuda:0", "cuda:1"},
    "--target-kind": {"auto", "classification", "regression"},
    "--missing": {"drop", "impute"},
    "--log": {"none", "tensorboard"},
}


def known_name(flag: str, value: str) -> bool:
    return value in CHOICES[flag] or flag == "--device" and re.fullmatch(r"cuda:[0-9]+", value) is not None


def device_lookalike(value) -> bool:
    """Names engine/config.py takes for devices and torch does not: see test_device_names_that_only_look_valid."""
    return isinstance(value, str) and re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", value) is not None \
        and not known_name("--device", value)


@pytest.mark.parametrize("flag", CHOICES)
@PROPERTY
@given(data=st.data())
def test_unknown_names_are_refused_by_name(no_training, flag, data):
    known = sorted(CHOICES[flag])
    typo = st.tuples(st.sampled_from(known), TEXT).map(lambda pair: pair[0] + (pair[1] or "x"))
    value = data.draw((TEXT | typo).filter(lambda name: not known_name(flag, name)))
    if flag == "--device" and device_lookalike(value):
        return
    refused(torchdeck("train", flag, value), f"{option(flag)}: ")


@pytest.mark.parametrize("device", ["cpu\n", "cuda:\u0663"])
def test_device_names_that_only_look_valid(no_training, device):
    assert device_lookalike(device)
    refused(torchdeck("train", "--device", device), "device: ")


def test_a_seed_too_large_for_torch(no_training):
    refused(torchdeck("train", "--seed", 2**64), "seed: ")


LAYER = st.integers(min_value=1, max_value=64).map(str)
BAD_LAYER = st.one_of(
    st.integers(max_value=0).map(str),
    st.floats(allow_nan=True).map(str).filter(lambda text: not converts(text, int)),
    TEXT.filter(lambda text: "," not in text and text.replace(" ", "") and not converts(text.replace(" ", ""), int)),
)


@PROPERTY
@given(hidden=st.one_of(
    st.tuples(st.lists(LAYER, max_size=3), BAD_LAYER, st.lists(LAYER, max_size=3)).map(
        lambda parts: ",".join([*parts[0], parts[1], *parts[2]])),
    st.sampled_from(["", ",", " ", ", ,", "16;8", "16.0,8", "[16, 8]"]),
))
def test_malformed_hidden_layers_are_refused(no_training, hidden):
    refused(torchdeck("train", "--hidden", hidden), "hidden")


TRAIN_FLAGS = [*OUT_OF_RANGE, *CHOICES, "--hidden", "--data-dir", "--target", "--out", "--name", "--weights",
               "--config", "--resume"]


@PROPERTY
@given(flag=st.sampled_from(TRAIN_FLAGS), value=TEXT)
def test_any_text_for_any_flag_is_taken_or_refused_in_one_line(no_training, flag, value):
    if flag == "--device" and device_lookalike(value):
        return
    accepted_or_refused(torchdeck("train", flag, value))


@PROPERTY
@given(words=st.lists(TEXT, max_size=5), command=st.sampled_from(["train", "inspect", "evaluate", "predict", "list"]))
def test_any_words_after_a_command_are_taken_or_refused_in_one_line(no_training, command, words):
    result = torchdeck(command, *words)
    if result.code not in (0, "accepted"):
        refused(result)


@PROPERTY
@given(top_k=st.integers(max_value=0), split=TEXT.filter(lambda text: text not in ("test", "val", "train")))
def test_predict_and_evaluate_options_out_of_range(no_training, top_k, split):
    refused(torchdeck("predict", ".", "--input", "1", "--top-k", top_k), "--top-k")
    refused(torchdeck("evaluate", ".", "--split", split), "--split")


# --- config files ------------------------------------------------------------------------------

TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=2),
    max_leaves=4,
)


@PROPERTY
@given(values=st.dictionaries(st.sampled_from(option_names()) | TEXT, TOML_VALUES, max_size=4))
def test_any_config_file_is_taken_or_refused_in_one_line(no_training, tmp_path, values):
    if device_lookalike(values.get("device")):
        values.pop("device")
    (tmp_path / "run.toml").write_text(tomli_w.dumps(values), encoding="utf-8")
    accepted_or_refused(torchdeck("train", "--config", tmp_path / "run.toml"))


@PROPERTY
@given(content=st.binary(max_size=60) | TEXT)
def test_any_bytes_as_a_config_file_are_taken_or_refused_in_one_line(no_training, tmp_path, content):
    path = tmp_path / "run.toml"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    accepted_or_refused(torchdeck("train", "--config", path))


def test_config_files_that_cannot_be_read(no_training, tmp_path):
    (tmp_path / "folder.toml").mkdir()
    refused(torchdeck("train", "--config", tmp_path / "folder.toml"), "folder.toml cannot be read")
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    refused(torchdeck("train", "--config", tmp_path / "latin1.toml"), "latin1.toml cannot be read")
    (tmp_path / "table.toml").write_text('task = "iris"\n[model]\nhidden = [8]\n')
    refused(torchdeck("train", "--config", tmp_path / "table.toml"), "model: ")


# --- saved runs: damaged, crafted and mismatched checkpoints -----------------------------------




def damaged(iris: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoint files damaged in the ways a disk, a copy or a hand can damage them: (path, complaint)."""
    good = (iris / rundir.LAST).read_bytes()
    state = torch.load(iris / rundir.LAST, weights_only=True)
    files = {}

    def write(name: str, content: bytes, complaint: str) -> None:
        (folder / name).write_bytes(content)
        files[name] = (folder / name, complaint)

    def edited(name: str, complaint: str, **changes) -> None:
        changed = {**state, **changes}
        for key in [key for key, value in changes.items() if value is None]:
            del changed[key]
        torch.save(changed, folder / name)
        files[name] = (folder / name, complaint)

    write("truncated.pt", good[: len(good) // 3], "is damaged or not a PyTorch file")
    write("noise.pt", np.random.default_rng(0).bytes(3000), "is damaged or not a PyTorch file")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("notes.txt", "a zip file, but not PyTorch's")
    write("zip.pt", archive.getvalue(), "is damaged or not a PyTorch file")
    torch.save(torch.nn.Linear(4, 3).state_dict(), folder / "state-dict.pt")
    files["state-dict.pt"] = (folder / "state-dict.pt", "is a PyTorch file but not a torchdeck checkpoint")
    edited("newer.pt", "written by a newer torchdeck (format 99)", format_version=99)
    edited("no-weights.pt", "damaged torchdeck checkpoint: it has no model", model=None)
    edited("no-epoch.pt", "damaged torchdeck checkpoint: it has no epoch", epoch=None)
    edited("weights-list.pt", "its model is a list, not a dict", model=[1, 2])
    edited("bad-rng.pt", "its rng has no shuffle", rng={"torch": 5})
    edited("bad-state.pt", "its train_state has the unknown field 'foo'",
           train_state={**state["train_state"], "foo": 1, "epoch": "two"})
    edited("bad-task.pt", "its task has no kind", task={"task": "iris"})
    edited("other-task.pt", "its config is for the task 'wine', its data and weights for 'iris'",
           config={**state["config"], "task": "wine"})
    edited("other-model.pt", "does not fit", config={**state["config"], "hidden": [32, 8]})
    edited("bad-config.pt", "lr: 'fast' is not allowed", config={**state["config"], "lr": "fast"})
    return files


DAMAGE = ["truncated.pt", "noise.pt", "zip.pt", "state-dict.pt", "newer.pt", "no-weights.pt", "no-epoch.pt",
          "weights-list.pt", "bad-rng.pt", "bad-state.pt", "bad-task.pt", "other-task.pt", "other-model.pt",
          "bad-config.pt"]


@pytest.fixture(scope="module")
def broken(iris, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return damaged(iris, tmp_path_factory.mktemp("broken"))


# What inspect, which reads any model file, says instead (None: it shows the file).
INSPECTED = {"noise.pt": "is not a model file torchdeck can read", "state-dict.pt": None}


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "resume"])
@pytest.mark.parametrize("name", DAMAGE)
def test_damaged_and_mismatched_checkpoints_are_one_line_for_every_command(broken, name, command):
    path, complaint = broken[name]
    if command == "inspect" and name in INSPECTED:
        complaint = INSPECTED[name]
    if complaint is None:
        assert "a state dict" in torchdeck(*reading_commands(path, 5)[command]).out
    else:
        assert complaint in refused(torchdeck(*reading_commands(path, 5)[command]))


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "resume"])
def test_a_damaged_last_pt_in_a_run_directory(iris, tmp_path, command):
    run_dir = Path(shutil.copytree(iris, tmp_path / "iris"))
    (run_dir / rundir.LAST).write_bytes((run_dir / rundir.LAST).read_bytes()[:100])
    (run_dir / rundir.BEST).write_bytes(b"")
    line = refused(torchdeck(*reading_commands(run_dir, 5)[command]))
    assert "last.pt is damaged" in line or "best.pt is empty" in line


def test_folders_that_are_not_runs(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    for command in reading_commands(tmp_path / "photos", 5).values():
        assert "is not a torchdeck run directory" in refused(torchdeck(*command))


@PROPERTY
@given(row=TEXT)
def test_any_typed_input_row_is_predicted_or_refused_in_one_line(iris, row):
    result = torchdeck("predict", iris, "--input", row, "--json")
    if result.code == 0:
        assert len(json.loads(result.out)) == 1
    else:
        refused(result)


@PROPERTY
@given(content=st.binary(max_size=80) | TEXT)
def test_any_csv_file_to_predict_is_predicted_or_refused_in_one_line(iris, tmp_path_factory, content):
    path = tmp_path_factory.getbasetemp() / "rows.csv"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    result = torchdeck("predict", iris, "--csv", path, "--json")
    if result.code != 0:
        refused(result)


# --- crafted pickles: refused, named, and never run ---------------------------------------------


@pytest.fixture
def crafted(iris, tmp_path):
    """A run directory whose checkpoints would run ``touch MARKER`` when unpickled, and that marker."""
    marker = tmp_path / "pwned"
    run_dir = Path(shutil.copytree(iris, tmp_path / "crafted"))
    state = torch.load(iris / rundir.LAST, weights_only=True)
    for name in (rundir.LAST, rundir.BEST):
        torch.save({**state, "model": Payload(marker)}, run_dir / name)
    return run_dir, marker


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "resume"])
@pytest.mark.parametrize("target", ["run directory", "file"])
def test_a_crafted_checkpoint_is_refused_named_and_never_runs(crafted, command, target):
    run_dir, marker = crafted
    path = run_dir if target == "run directory" else run_dir / rundir.BEST
    line = refused(torchdeck(*reading_commands(path, 5)[command]))
    assert re.search(r"was refused: loading it would run or build Python objects \((posix|nt)\.system\)", line)
    assert not marker.exists()


def test_crafted_weights_for_a_model_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"fc.weight": Payload(marker)}, tmp_path / "evil.pt")
    photos = write_images(tmp_path / "photos", {"a": 10, "b": 10})
    line = refused(torchdeck("train", "--task", "image-folder", "--data-dir", photos, "--model", "resnet18",
                             "--weights", tmp_path / "evil.pt", "--image-size", "16", "--out", tmp_path / "runs"))
    assert "weights: " in line and "evil.pt was refused" in line and ".system)" in line
    assert not marker.exists()


def test_the_browser_refuses_a_crafted_checkpoint_and_it_never_runs(crafted, monkeypatch):
    import asyncio

    from conftest import highlight, settle, text
    from textual.widgets import Static

    from tui.app import TorchdeckApp

    run_dir, marker = crafted
    monkeypatch.setattr(TorchdeckApp, "notify", lambda self, message, **kw: None)

    async def scenario():
        app = TorchdeckApp(out=run_dir.parent, browse=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            screen = await highlight(pilot, run_dir)
            assert "last.pt was refused" in text(screen.query_one("#overview-text", Static))
            for key in ("p", "e"):  # predict and evaluate load best.pt
                await pilot.press(key)
                await settle(pilot)
                assert "best.pt was refused" in text(app.screen.query_one("#error", Static))
                await pilot.press("escape")

    asyncio.run(scenario())
    assert not marker.exists()


# --- images and image folders -------------------------------------------------------------------


def write_images(root: Path, counts: dict[str, int], modes=("RGB",), sizes=((12, 12),)) -> Path:
    """``root/<class>/<n>.png`` with ``counts`` images per class, cycling through modes and sizes."""
    rng = np.random.default_rng(0)
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            width, height = sizes[n % len(sizes)]
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            mode = modes[n % len(modes)]
            image.convert(mode).save(root / label / f"{n}.{'jpg' if mode == 'CMYK' else 'png'}")
    return root


MIXED_MODES = ("RGB", "L", "RGBA", "P", "LA", "1", "CMYK", "I;16")
MIXED_SIZES = ((12, 12), (8, 40), (40, 8), (100, 64), (9, 9))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A finished image-folder run on images of every mode and many sizes and shapes."""
    root = tmp_path_factory.mktemp("mixed")
    photos = write_images(root / "photos", {"a": 8, "b": 8}, MIXED_MODES, MIXED_SIZES)
    run = Run.new(RunConfig.for_task("image-folder", data_dir=str(photos), image_size=16, epochs=1,
                                     out=str(root / "runs"), name="mixed")).start()
    assert run.wait().name == "run_finished"
    return run.run_dir


def test_mixed_sizes_and_modes_are_converted_and_resized(mixed, tmp_path):
    meta = checkpoint.load(mixed / rundir.LAST)["task"]
    assert meta["image_mode"] == "RGB" and meta["input_shape"] == [3, 16, 16]  # colour anywhere: all RGB
    for mode, size in (("L", (30, 7)), ("RGBA", (16, 16)), ("P", (200, 50)), ("1", (5, 5))):
        Image.new(mode, size).save(tmp_path / f"{mode}.png")
    result = torchdeck("predict", mixed, *sorted(tmp_path.glob("*.png")), "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)) == 4


def test_a_folder_of_grayscale_images_trains_in_grayscale(tmp_path):
    photos = write_images(tmp_path / "photos", {"a": 8, "b": 8}, ("L", "1", "LA", "I;16"), MIXED_SIZES)
    run = Run.new(RunConfig.for_task("image-folder", data_dir=str(photos), image_size=8, epochs=1,
                                     out=str(tmp_path / "runs")))
    assert run.data.meta.image_mode == "L" and tuple(run.data.meta.input_shape) == (1, 8, 8)


@pytest.mark.parametrize("name, content, complaint", [
    ("folder.png", None, "is not an image torchdeck can read (IsADirectoryError)"),
    ("missing.png", "", "missing.png: no such file"),
    ("empty.jpg", b"", "is not an image torchdeck can read"),
    ("truncated.png", "half", "is not an image torchdeck can read"),
    ("notes.txt", b"hello", "is not an image torchdeck can read"),
])
def test_image_files_to_predict_that_are_not_images(mixed, tmp_path, name, content, complaint):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content == "half":
        Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
        path.write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    assert complaint in refused(torchdeck("predict", mixed, path), name)


def test_unusable_image_folders_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert "has no class folders" in refused(torchdeck("train", "--task", "image-folder", "--data-dir", "empty"))
    text_only = tmp_path / "text"
    for label in ("a", "b"):
        (text_only / label).mkdir(parents=True)
        (text_only / label / "notes.txt").write_text("no images here")
    assert "holds no images" in refused(torchdeck("train", "--task", "image-folder", "--data-dir", text_only))
    broken = write_images(tmp_path / "broken", {"a": 10, "b": 10})
    (broken / "b" / "2.png").write_bytes(b"not an image at all")
    (broken / "a" / "7.png").write_bytes(b"")
    line = refused(torchdeck("train", "--task", "image-folder", "--data-dir", broken))
    assert line.endswith("7.png is not an image torchdeck can read (UnidentifiedImageError) (and 1 more file(s) "
                         f"like it); remove or move such files out of {broken}")


def test_a_broken_image_found_by_a_dataloader_worker_fails_the_run_in_one_line(tmp_path, monkeypatch):
    """Every image is decoded before training; a file damaged after that check (a disk going bad,
    a file replaced mid-run) still fails the run in one line, from a DataLoader worker."""
    import engine.data.folders as folders

    monkeypatch.setattr(folders, "STATS_SAMPLE", 1)
    monkeypatch.setattr("engine.data.loader._workers", lambda samples, device: 2)  # workers even on a 2-core CPU
    photos = write_images(tmp_path / "photos", {"a": 30, "b": 30})
    run = Run.new(RunConfig.for_task("image-folder", data_dir=str(photos), image_size=8, epochs=1,
                                     out=str(tmp_path / "runs")))
    (photos / "b" / "29.png").write_bytes((photos / "b" / "29.png").read_bytes()[:60])  # the header and no pixels
    failed = run.start().wait()
    assert failed.name == "run_failed"
    assert failed.message == f"{photos / 'b' / '29.png'} is not an image torchdeck can read (OSError)"


# --- output folders and names --------------------------------------------------------------------


def test_output_folders_and_names_that_cannot_be_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("a file where the output folder should be")
    assert "cannot create the output folder file: " in refused(torchdeck("train", "--out", "file"))
    line = refused(torchdeck("train", "--epochs", "1", "--name", "n" * 300))
    assert "cannot create the run directory" in line and "File name too long" in line


# --- names and values that are markup or terminal escapes ------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A csv run whose classes are markup and escapes, trained through the terminal's (Rich)
    reporter into a folder whose path holds ``[/]`` and ``ESC [2J``: (run directory, what the
    reporter wrote, the csv)."""
    from rich.console import Console

    from cli.report import RichReporter

    folder = tmp_path_factory.mktemp("hostile")
    data = hostile_csv(folder)
    out = folder / "[" / "]\x1b[2J"
    console = Console(file=io.StringIO(), force_terminal=True, width=300)
    reporter = RichReporter(console)
    config = RunConfig.for_task("csv", data_dir=str(data), target="label", epochs=2, out=str(out), name="[b]x")
    run = Run.new(config).start()
    for event in run.events:
        reporter(event)
    run.wait()
    reporter.close()
    return run.run_dir, console.file.getvalue(), data


def shown_as_text(output: str) -> None:
    """Every hostile class is shown literally, its control characters escaped, none sent raw."""
    for name in HOSTILE_CLASSES:
        assert printable(name) in output
    assert "\x1b" not in output and "\x07" not in output


def test_a_terminal_shows_a_run_whose_names_are_markup_and_escapes_as_text(hostile):
    run_dir, output, _ = hostile
    assert "finished after 2 epochs" in output
    assert f"run directory {printable(str(run_dir))}" in re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert "\x1b[2J" not in output


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict"])
def test_names_that_are_markup_and_escapes_are_shown_as_text(hostile, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    run_dir, _, data = hostile
    result = torchdeck(command, run_dir, *(["--csv", data] if command == "predict" else []))
    assert result.code == 0, result.err
    shown_as_text(result.out.replace(printable(str(run_dir)), ""))
    if command != "predict":
        assert printable(str(run_dir)) in result.out
    if command == "inspect":
        assert "weight [kg]" in result.out and "[b]x" in result.out


def test_the_plain_log_escapes_control_characters_in_one_line_per_event(hostile, tmp_path):
    from cli.report import PlainReporter

    run_dir, _, data = hostile
    out = io.StringIO()
    reporter = PlainReporter(out, io.StringIO())
    config = RunConfig.for_task("csv", data_dir=str(data), target="label", epochs=1, out=str(tmp_path / "o\x1b]0;x"))
    run = Run.new(config).start()
    for event in run.events:
        reporter(event)
    run.wait()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "epoch", "end"]
    assert "\x1b" not in out.getvalue() and "o\\x1b]0;x" in lines[0]


@pytest.mark.parametrize("name", ["a\nb", "\x1b[2J", "tab\there", "del\x7f", "txt.exe\u202egpj", "line\u2028break"])
def test_run_names_with_control_characters_are_refused_in_one_line(name, no_training):
    line = refused(torchdeck("train", "--name", name), "name")
    assert repr(name) in line


# --- writing outside the run: links, the output location, the home folder -----------------------


@pytest.mark.parametrize("name", [rundir.CONFIG, rundir.EVENTS, rundir.METRICS, rundir.LAST, rundir.BEST])
@pytest.mark.parametrize("given", ["run directory", "file"])
def test_a_run_directory_holding_a_link_is_not_resumed_and_the_target_stays(iris, tmp_path, name, given):
    run_dir = Path(shutil.copytree(iris, tmp_path / "crafted"))
    target = tmp_path / "bashrc"
    target.write_text("alias ls='ls -F'\n")
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(target)
    path = run_dir if given == "run directory" else run_dir / (rundir.BEST if name == rundir.LAST else rundir.LAST)
    line = refused(torchdeck("train", "--resume", path, "--epochs", "3"))
    assert f"{run_dir} holds symbolic links ({name})" in line
    assert target.read_text() == "alias ls='ls -F'\n"


def test_a_loose_checkpoint_resumes_into_out_never_where_it_says(iris, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = torch.load(iris / rundir.LAST, weights_only=True)
    elsewhere = tmp_path / "elsewhere"
    config = {**saved["config"], "out": str(elsewhere), "name": "planted"}
    torch.save({**saved, "config": config}, tmp_path / "model.pt")  # a downloaded model.pt
    for changes, out in [({}, Path("checkpoints")), ({"out": "mine"}, Path("mine"))]:
        run = Run.resume("model.pt", epochs=3, **changes)  # prepared: its run directory exists
        assert run.run_dir.parent == out and run.run_dir.name != "planted"
        assert run.config.out == str(out) and (run.run_dir / rundir.CONFIG).is_file()
    assert not elsewhere.exists()
    line = refused(torchdeck("train", "--resume", iris, "--epochs", "3", "--out", "mine"), "out")
    assert "is a run directory, which resumes into itself" in line


def test_a_home_folder_in_out_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "run.toml").write_text('out = "~/toml"\nepochs = 1\n')
    assert torchdeck("train", "--out", "~/flag", "--epochs", "1").code == 0
    assert torchdeck("train", "--config", "run.toml").code == 0
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["flag", "toml"]
    assert not (tmp_path / "~").exists()


# Task C: config files that are no files, device names, models too big to fit, odd weights ------


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_a_config_that_is_a_fifo_a_device_or_huge_is_one_line(no_training, tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.toml")  # opened for reading, it would wait for a writer forever
    refused(torchdeck("train", "--config", tmp_path / "fifo.toml"), "fifo.toml cannot be read: it is a FIFO")
    refused(torchdeck("train", "--config", "/dev/zero"), "/dev/zero cannot be read: it is a character device")
    (tmp_path / "huge.toml").write_text("# padding\n" * 120_000)
    refused(torchdeck("train", "--config", tmp_path / "huge.toml"), "huge.toml cannot be read: it is over 1 MiB")
    (tmp_path / "list.toml").write_text("task = []\n")
    refused(torchdeck("train", "--config", tmp_path / "list.toml"), "task: '[]' is not a known task")


@pytest.mark.parametrize("device", ["cuda:99999999999999999999999", "cuda:-1", "cpu:5", "meta", "cuda:01", "cuda:0"])
def test_device_names_are_one_line_on_this_machine(tmp_path, device):
    if device == "cuda:0" and torch.cuda.is_available():
        pytest.skip("cuda:0 exists here")
    refused(torchdeck("train", "--device", device, "--out", tmp_path), "device: ")


@pytest.mark.parametrize("flags", [["--hidden", "10000000000"], ["--hidden", "100000000,100000000"],
                                   ["--hidden", "10000000000,10000000000"]])
def test_hidden_layers_too_big_for_the_machine_are_one_line(tmp_path, flags):
    line = refused(torchdeck("train", *flags, "--out", tmp_path / "runs"))
    assert re.search(r"the model needs (about [\d.]+ [TP]B \(parameters|more memory than any machine has)", line)
    assert line.endswith("use fewer or smaller --hidden layers or a smaller --batch-size")
    assert not (tmp_path / "runs").exists()


def test_an_image_size_too_big_for_the_machine_is_one_line(tmp_path):
    photos = write_images(tmp_path / "photos", {"a": 6, "b": 6})
    line = refused(torchdeck("train", "--task", "image-folder", "--data-dir", photos, "--image-size", "2147483648",
                             "--out", tmp_path / "runs"))
    assert "the model needs more memory than any machine has" in line and "a smaller --image-size" in line


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "resume"])
def test_a_checkpoint_whose_config_asks_for_a_model_too_big_is_one_line(iris, tmp_path, command):
    saved = torch.load(iris / rundir.LAST, weights_only=True)
    torch.save({**saved, "config": {**saved["config"], "hidden": [10**6, 10**6]}}, tmp_path / "huge.pt")
    elsewhere = ["--out", tmp_path / "runs"] if command == "resume" else []
    line = refused(torchdeck(*reading_commands(tmp_path / "huge.pt", 5)[command], *elsewhere))
    assert re.search(r"the model needs about [\d.]+ TB \(parameters 4\.0 TB", line)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_weights_stored_sparse_or_not_as_floats_are_one_line_naming_file_and_key(tmp_path):
    import torchvision

    own = torchvision.models.resnet18(weights=None, num_classes=2).state_dict()
    photos = write_images(tmp_path / "photos", {"a": 10, "b": 10})
    for name, key, tensor in [("sparse.pt", "layer1.0.conv1.weight", own["layer1.0.conv1.weight"].to_sparse()),
                              ("ints.pt", "fc.weight", own["fc.weight"].to(torch.int32))]:
        torch.save({**own, key: tensor}, tmp_path / name)
        line = refused(torchdeck("train", "--task", "image-folder", "--data-dir", photos, "--model", "resnet18",
                                 "--weights", tmp_path / name, "--image-size", "64", "--out", tmp_path / "runs"))
        assert line.startswith(f"torchdeck: error: weights: {tmp_path / name}: {key} ")  # the ImageNet stem
