"""Exports, used as a consumer without torchdeck would use them: the file, the sidecar's
preprocessing and nothing else must give what torchdeck's own predict gives.

One tabular MLP (iris) and one image CNN (MNIST-like shapes) are trained once for the module;
each format is exported from them and read back with torch.jit.load, onnxruntime, or
torch.load(weights_only=True) into a model written out by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shape_images, write_idx_pair
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_iris
from torch import nn

from engine.config import RunConfig
from engine.train.run import Run
from engine.use.export import FORMATS, export, sidecar_path
from engine.use.predict import predict, predict_images
from engine.use.saved import load

FORMAT_NAMES = list(FORMATS)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # it still loads


def needs(format_name: str) -> None:
    """Skip a test of the onnx format where the optional extra is not installed."""
    for module in FORMATS[format_name].needs:
        pytest.importorskip(module)


def trained(out: Path, name: str, task: str, **options) -> Path:
    run = Run.new(RunConfig.for_task(task, out=str(out), name=name, **options)).start()
    assert run.wait().name == "run_finished"
    return out / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tabular MLP and an image CNN, each trained for a few epochs."""
    root = tmp_path_factory.mktemp("export")
    write_idx_pair(root / "mnist", "t10k", *shape_images(300))
    return {
        "iris": trained(root / "runs", "iris", "iris", epochs=5),
        "cnn": trained(root / "runs", "cnn", "mnist", data_dir=str(root / "mnist"), model="cnn", hidden=[32],
                       epochs=2),
    }


# --- what a consumer without torchdeck writes -----------------------------------------------


def hand_built(info: dict) -> nn.Module:
    """The sidecar's model (mlp, or cnn: two conv blocks and the mlp head) written out in plain torch."""
    options, shape = info["model"]["options"], info["input"]["shape"][1:]
    layers: list[nn.Module] = []
    if info["model"]["name"] == "cnn":
        channels, height, width = shape
        layers = [nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        shape = [64 * (height // 4) * (width // 4)]
    layers.append(nn.Flatten())
    width = shape[0]
    for size in options["hidden"]:
        layers += [nn.Linear(width, size), nn.ReLU()] + ([nn.Dropout(options["dropout"])] if options["dropout"] else [])
        width = size
    layers.append(nn.Linear(width, info["output"]["shape"][1]))
    return nn.Sequential(*layers).eval()


def consumer_outputs(path: str, info: dict, inputs: np.ndarray) -> np.ndarray:
    """Run the exported file on prepared float32 inputs, with torch or onnxruntime alone."""
    if info["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run([info["output"]["name"]], {info["input"]["name"]: inputs})[0]
    if info["format"] == "torchscript":
        model = torch.jit.load(path)
    else:
        model = hand_built(info)
        model.load_state_dict(load_file(path) if info["format"] == "safetensors" else torch.load(path, weights_only=True))
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy()


def prepare_rows(rows: np.ndarray, preprocess: dict) -> np.ndarray:
    return ((rows - np.array(preprocess["mean"])) / np.array(preprocess["std"])).astype(np.float32)


def prepare_image(path: Path, preprocess: dict) -> np.ndarray:
    """The sidecar's steps for one image file: mode, size, [0, 1], channels first, per-channel normalising."""
    with Image.open(path) as image:
        image = image.convert(preprocess["mode"]).resize((preprocess["width"], preprocess["height"]),
                                                         Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32).reshape(preprocess["height"], preprocess["width"], -1) / 255
    mean, std = np.array(preprocess["mean"]), np.array(preprocess["std"])
    return ((pixels - mean) / std).transpose(2, 0, 1).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities(answers: list[dict], classes: list[str]) -> np.ndarray:
    """torchdeck's predict answers as one row of probabilities per input, in class order."""
    return np.array([[next(t["probability"] for t in a["top"] if t["class"] == c) for c in classes]
                     for a in answers])


# --- the formats --------------------------------------------------------------------------


@pytest.mark.parametrize("format_name", FORMAT_NAMES)
def test_a_tabular_mlp_works_from_the_file_and_sidecar_alone(runs, format_name):
    needs(format_name)
    saved = load(runs["iris"])
    result = export(saved, format_name)
    path = Path(result["path"])
    assert path == runs["iris"] / "export" / f"best{FORMATS[format_name].suffix}" and path.is_file()
    info = json.loads(sidecar_path(path).read_text())
    assert info == {key: value for key, value in result.items() if key in info}
    assert (info["task"], info["kind"]) == ("iris", "multiclass")
    assert info["classes"] == ["setosa", "versicolor", "virginica"]
    assert info["preprocess"]["features"][0] == "sepal length (cm)" and info["input"]["shape"] == ["batch", 4]
    check = info["verification"]
    assert check["passed"] and check["inputs"] == "the test split" and check["samples"] == 30
    assert check["max_abs_diff"] <= check["tolerance"] <= 1e-3

    rows = load_iris().data[::10]  # raw measurements, 15 rows
    outputs = consumer_outputs(str(path), info, prepare_rows(rows, info["preprocess"]))
    assert outputs.shape == (15, 3)
    expected = probabilities(predict(saved, rows, top_k=3), info["classes"])
    np.testing.assert_allclose(softmax(outputs), expected, atol=1e-5)


@pytest.mark.parametrize("format_name", FORMAT_NAMES)
def test_an_image_cnn_works_from_the_file_and_sidecar_alone(runs, format_name, tmp_path):
    needs(format_name)
    saved = load(runs["cnn"])
    result = export(saved, format_name, tmp_path / "digits" / "cnn.model")
    path = tmp_path / "digits" / "cnn.model"
    assert result["path"] == str(path) and path.is_file()
    info = json.loads((tmp_path / "digits" / "cnn.model.json").read_text())
    preprocess = info["preprocess"]
    assert (preprocess["mode"], preprocess["height"], preprocess["width"]) == ("L", 28, 28)
    assert preprocess["mean"] == [0.5] and preprocess["std"] == [0.5]  # the mnist task's fixed normalisation
    assert info["input"]["shape"] == ["batch", 1, 28, 28] and info["model"]["name"] == "cnn"

    images, _ = shape_images(5, seed=9)
    files = []
    for index, image in enumerate(images):  # other sizes and modes than training's, as a user's files are
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(image).resize((40, 40)).convert("RGB").save(files[-1])
    batch = np.stack([prepare_image(file, preprocess) for file in files])
    outputs = consumer_outputs(str(path), info, batch)
    expected = probabilities(predict_images(saved, files, top_k=10), info["classes"])
    np.testing.assert_allclose(softmax(outputs), expected, atol=1e-5)


def test_onnx_has_a_free_batch_dimension(runs, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    needs("onnx")
    result = export(load(runs["iris"]), "onnx", tmp_path)
    assert Path(result["path"]) == tmp_path / "best.onnx"  # a folder gets the default name
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    for count in (1, 7, 100):
        assert session.run(None, {"input": np.zeros((count, 4), np.float32)})[0].shape == (count, 3)


def test_a_state_dict_is_plain_tensors_and_the_sidecar_describes_the_layers(runs, tmp_path):
    result = export(load(runs["iris"]), "state-dict", tmp_path / "weights.pt")
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(isinstance(tensor, torch.Tensor) for tensor in state.values())
    checkpoint = torch.load(runs["iris"] / "best.pt", weights_only=True)["model"]
    assert state.keys() == checkpoint.keys() and all(torch.equal(state[k], checkpoint[k]) for k in state)
    assert "Linear(in_features=4, out_features=16" in result["model"]["architecture"]


def test_safetensors_holds_the_same_tensors_and_the_sidecar_describes_the_layers(runs, tmp_path):
    result = export(load(runs["iris"]), "safetensors", tmp_path)
    assert Path(result["path"]) == tmp_path / "best.safetensors" and result["verification"]["passed"]
    state = load_file(result["path"])
    checkpoint = torch.load(runs["iris"] / "best.pt", weights_only=True)["model"]
    assert state.keys() == checkpoint.keys() and all(torch.equal(state[k], checkpoint[k]) for k in state)
    assert "Linear(in_features=4, out_features=16" in result["model"]["architecture"]
    assert "safetensors.torch.load_file(FILE)" in result["load"]


TIED = """
from torch import nn


class Tied(nn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.first, self.second = nn.Linear(in_features, in_features), nn.Linear(in_features, in_features)
        self.head = nn.Linear(in_features, num_classes)
        self.second.weight = self.first.weight  # one tensor under two names, as tied embeddings are

    def forward(self, x):
        return self.head(self.second(self.first(x).relu()))
"""


def test_safetensors_takes_tied_weights(tmp_path):
    (tmp_path / "tied.py").write_text(TIED)
    run_dir = trained(tmp_path / "runs", "tied", "iris", model=f"{tmp_path / 'tied.py'}:Tied", epochs=1)
    result = export(load(run_dir), "safetensors")
    state = load_file(result["path"])
    assert result["verification"]["passed"] and torch.equal(state["first.weight"], state["second.weight"])


def test_a_csv_table_exports_its_encoding_and_falls_back_to_random_inputs_without_its_data(tmp_path):
    rows = [f"{i % 7},{['red', 'blue', 'green'][i % 3]},{i % 2}" for i in range(90)]
    table = tmp_path / "table.csv"
    table.write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    run_dir = trained(tmp_path / "runs", "table", "csv", data_dir=str(table), target="label", epochs=2)
    saved = load(run_dir)
    table.unlink()  # the consumer's machine has the model, not the training data
    result = export(saved, "torchscript")
    assert result["verification"]["inputs"].startswith("random inputs (the task's data could not be read")
    preprocess = result["preprocess"]
    assert [column["name"] for column in preprocess["columns"]] == ["size", "colour"]
    colour = preprocess["columns"][1]
    assert colour["type"] == "text" and colour["categories"] == ["blue", "green", "red"]
    # the sidecar's encoding by hand: size as a number, colour one-hot in category order
    encoded = np.array([[3.0, 0.0, 0.0, 1.0]])
    outputs = consumer_outputs(result["path"], result, prepare_rows(encoded, preprocess))
    answer = predict(saved, [["3", "red"]], top_k=2)[0]
    assert result["kind"] == "binary" and outputs.shape == (1, 1)
    positive = 1 / (1 + np.exp(-outputs[0, 0]))
    assert positive == pytest.approx(next(t["probability"] for t in answer["top"] if t["class"] == "1"), abs=1e-5)


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli_run(cli, tmp_path, runs) -> Path:
    """A copy of the iris run (without the other tests' exports) inside the CLI's working folder."""
    import shutil

    return Path(shutil.copytree(runs["iris"], tmp_path / "iris", ignore=shutil.ignore_patterns("export")))


def test_the_command_prints_the_files_and_the_check(cli, cli_run):
    result = cli("export", "iris")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 4 and "\x1b" not in result.out
    assert lines[0].startswith("torchscript  iris/export/best.torchscript.pt  ") and "epoch" in lines[0]
    assert lines[1] == "sidecar      iris/export/best.torchscript.pt.json"
    assert lines[2].startswith("verified     30 samples of the test split: largest difference ")
    assert "tolerance" in lines[2] and lines[3].startswith("took ")
    info = json.loads(cli("export", "iris/best.pt", "--format", "state-dict", "--json").out)
    assert info["path"] == "iris/export/best.state_dict.pt" and info["verification"]["passed"]
    assert sorted(p.name for p in (cli_run / "export").iterdir()) == [
        "best.state_dict.pt", "best.state_dict.pt.json", "best.torchscript.pt", "best.torchscript.pt.json"]


@pytest.mark.parametrize("args, message", [
    (["iris", "--format", "onx"], "format: 'onx' is not a known format; choose one of torchscript, onnx, "
                                  "state-dict, safetensors (did you mean 'onnx'?)"),
    (["nowhere"], "no such file"),
    (["not-a-run"], "not a torchdeck run directory"),
    (["junk.pt"], "damaged or not a PyTorch file"),
    (["iris", "--out", "junk.pt/model.pt"], "cannot create the folder junk.pt"),
])
def test_bad_input_is_one_line_and_exit_2(cli, cli_run, tmp_path, args, message):
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "junk.pt").write_text("junk")
    result = cli("export", *args)
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdeck: error: ") and message in lines[0], result.err


def test_onnx_without_the_extra_names_it(cli, cli_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    result = cli("export", "iris", "--format", "onnx")
    assert result.code == 2
    line = result.err.strip()
    assert line.startswith("torchdeck: error: onnx export needs the optional package(s) ") and "\n" not in line
    assert "onnxruntime" in line and line.endswith('pip install -e ".[onnx]"')
    assert not (cli_run / "export").exists()


def test_a_mismatch_fails_with_exit_1_and_keeps_nothing(cli, cli_run, monkeypatch):
    from engine.use import export as exporting

    honest = exporting.outputs_of

    def mismatch(format_name: str) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(exporting, "outputs_of", lambda model, x: honest(model, x) + 0.01)
            result = cli("export", "iris", "--format", format_name)
        assert result.code == 1 and len(result.err.splitlines()) == 1
        assert "differs from the checkpoint's by up to 0.01" in result.err and "nothing was written" in result.err

    mismatch("torchscript")
    assert not (cli_run / "export").exists()  # not even the folder
    assert cli("export", "iris").code == 0
    kept = (cli_run / "export" / "best.torchscript.pt").read_bytes()
    mismatch("torchscript")
    mismatch("state-dict")
    assert sorted(p.name for p in (cli_run / "export").iterdir()) == ["best.torchscript.pt", "best.torchscript.pt.json"]
    assert (cli_run / "export" / "best.torchscript.pt").read_bytes() == kept


# --- what is in the way ---------------------------------------------------------------------


def one_line(result) -> str:
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    return lines[0]


@pytest.mark.parametrize("place", ["link", "fifo", "folder", "link as sidecar"])
def test_export_replaces_nothing_but_a_regular_file(cli, cli_run, tmp_path, place):
    """A FIFO stands in for a device node (``--out /dev/null``): neither is a regular file."""
    target = tmp_path / "bashrc"
    target.write_text("alias ls='ls -F'\n")
    destination = tmp_path / "model.pt"
    if place == "link":
        destination.symlink_to(target)
    elif place == "fifo":
        os.mkfifo(destination)
    elif place == "folder":
        destination = tmp_path / "exports"
        (destination / "best.torchscript.pt").mkdir(parents=True)  # where --out FOLDER puts the file
    else:
        sidecar_path(destination).symlink_to(target)
    line = one_line(cli("export", "iris", "--out", destination))
    assert "is in the way: export replaces only a regular file" in line
    assert target.read_text() == "alias ls='ls -F'\n" and not list(tmp_path.glob("**/.*.tmp"))


def test_a_linked_export_folder_is_refused(cli, cli_run, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (cli_run / "export").symlink_to(tmp_path / "elsewhere")
    assert "export is a symbolic link" in one_line(cli("export", "iris"))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_an_unwritable_destination_is_one_line_in_the_systems_words(cli, cli_run):
    line = one_line(cli("export", "iris", "--out", "/proc/model.pt"))  # refused even to root
    assert line.startswith("torchdeck: error: cannot write model.pt in /proc: ") and "inline_container" not in line


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_export_leaves_no_temporary(cli_run, stop):
    """Ctrl+C or SIGTERM while the exporter works; what a killed one left is cleared by the next export."""
    export_dir = cli_run / "export"
    export_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (export_dir / f".best.torchscript.pt.{int(dead.stdout)}.tmp").write_bytes(b"half")  # a kill -9's leftover
    (export_dir / f".notes.{int(dead.stdout)}.tmp").write_bytes(b"not an export's")
    process = subprocess.Popen([sys.executable, "-m", "cli", "export", str(cli_run)], stderr=subprocess.PIPE,
                               cwd=Path(__file__).parents[3])
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(f".{process.pid}.tmp") for p in export_dir.iterdir()):  # the exporter is at work
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.002)
    process.send_signal(stop)
    assert process.wait(120) in (128 + stop, 0)  # 0: it had just finished
    assert [p.name for p in export_dir.iterdir() if p.name.endswith(".tmp")] == [f".notes.{int(dead.stdout)}.tmp"]
