"""Hostile and huge data files (issue 13): decompression bombs, images damaged past their header,
empty and inflating IDX files, non-finite CSV numbers and very wide tables are each one line,
never a traceback, a hang or silent damage."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import train, write_idx
from PIL import Image

from engine.config import RunConfig
from engine.data.tasks import load_task
from engine.errors import DataError
from engine.train.run import Run


def one_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    return lines[0]


# ---- images -------------------------------------------------------------------------------------


def write_images(root: Path, classes=("a", "b"), count: int = 6, size: int = 32) -> Path:
    """``root/<class>/<n>.png`` of random pixels (so that half a file still has its header)."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{n}.png")
    return root


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` grayscale pixels in a few dozen bytes: opening it
    reads only this far, so it stands for a solid-colour bomb without a byte of real pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def cut_in_half(path: Path) -> None:
    """The file's header and part of its pixels: it opens, but does not decode."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def new_run(root: Path, tmp_path: Path) -> Run:
    return Run.new(RunConfig.for_task("image-folder", data_dir=str(root), image_size=8, epochs=1,
                                      out=str(tmp_path / "runs")))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished image-folder run on tiny images."""
    root = tmp_path_factory.mktemp("image-run")
    run = new_run(write_images(root / "photos", count=10), root).start()
    assert run.wait().name == "run_finished"
    return run.run_dir


@pytest.mark.parametrize("width, height, pixels", [(20000, 20000, "400,000,000"), (10000, 10000, "100,000,000")])
def test_a_decompression_bomb_in_a_folder_is_refused_naming_it_and_its_size(tmp_path, width, height, pixels):
    """Over twice PIL's limit it raises, over the limit it only warns (and would decode): both refused."""
    root = write_images(tmp_path / "photos")
    bomb = png_header(root / "b" / "huge.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning gets out either
        with pytest.raises(DataError) as caught:
            new_run(root, tmp_path)
    assert str(caught.value).startswith(f"{bomb} is an image of {pixels} pixels, over the 89,478,485")
    assert "\n" not in str(caught.value) and not (tmp_path / "runs").exists()


def test_a_decompression_bomb_to_predict_is_one_line(cli, image_run, tmp_path):
    bomb = png_header(tmp_path / "bomb.png", 20000, 20000)
    line = one_line(cli("predict", image_run, bomb))
    assert f"{bomb} is an image of 400,000,000 pixels" in line


def test_images_damaged_past_their_header_in_train_are_refused_before_training(tmp_path):
    root = write_images(tmp_path / "photos")
    Image.new("RGB", (300, 200), "red").save(root / "a" / "photo.jpg", quality=95)
    cut_in_half(root / "a" / "photo.jpg")
    cut_in_half(root / "b" / "3.png")
    with pytest.raises(DataError) as caught:
        new_run(root, tmp_path)
    assert str(caught.value) == (f"{root / 'a' / 'photo.jpg'} is not an image torchdeck can read (OSError) "
                                 f"(and 1 more file(s) like it); remove or move such files out of {root}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_image_damaged_past_its_header_in_val_or_test_is_refused_before_training(tmp_path, split):
    """Found up front, not when the split is reached (the test split: at the end of the run)."""
    root = tmp_path / "photos"
    for name in ("train", "val", "test"):
        write_images(root / name, count=6 if name == "train" else 3)
    cut_in_half(root / split / "b" / "1.png")
    with pytest.raises(DataError, match="1.png is not an image torchdeck can read"):
        new_run(root, tmp_path)
    assert not (tmp_path / "runs").exists()


# ---- MNIST's IDX files --------------------------------------------------------------------------


def load_mnist(folder: Path) -> str:
    with pytest.raises(DataError) as caught:
        load_task(RunConfig.for_task("mnist", data_dir=str(folder)))
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_an_idx_file_of_no_images_is_one_line(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(0))
    assert "t10k-images-idx3-ubyte.gz holds no images" in load_mnist(tmp_path)


def gzip_bomb(path: Path, header: bytes, zeros: int) -> Path:
    """A gzip file of ``header`` and then ``zeros`` zero bytes, compressed as it is written."""
    with gzip.open(path, "wb") as handle:
        handle.write(header)
        block = bytes(2**20)
        for _ in range(zeros // len(block)):
            handle.write(block)
    return path


def idx_header(*shape: int) -> bytes:
    return (0x800 + len(shape)).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """6 images claimed, 128 MB of zeros inflated from a fraction of a MB: refused after reading 6."""
    gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz", idx_header(6, 28, 28), 128 * 2**20)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(6))
    tracemalloc.start()
    try:
        message = load_mnist(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "t10k-images-idx3-ubyte.gz holds more data than its header says (6x28x28)" in message
    assert peak < 16 * 2**20


@pytest.mark.parametrize("images, labels, complaint", [
    (idx_header(10**9, 28, 28), idx_header(10**9), "claims 1,000,000,000 images, more than the 1,000,000"),
    (idx_header(6, 28, 28), idx_header(10**9), "holds 6 images but"),
    (idx_header(6, 4096, 4096), idx_header(6), "holds images of 1x4096x4096, not 1x28x28"),
], ids=["a billion images", "a billion labels", "huge images"])
def test_idx_headers_are_checked_before_any_pixel_is_read(tmp_path, images, labels, complaint):
    gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz", images, 2**20)
    gzip_bomb(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 2**20)
    assert complaint in load_mnist(tmp_path)


# ---- CSV numbers --------------------------------------------------------------------------------


def write_table(path: Path, cell: str | None = None, column: str = "x", rows: int = 30) -> Path:
    """``x`` (a number), ``y`` (a number target) and ``label`` (3 classes); line 5 gets ``cell``."""
    lines = ["x,y,label"]
    for row in range(rows):
        values = {"x": f"{row % 3 + row / 100:.2f}", "y": f"{row * 1.5:.1f}", "label": "abc"[row % 3]}
        if cell is not None and len(lines) == 4:
            values[column] = cell
        lines.append(",".join(values.values()))
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_config(path: Path, target: str = "label", **options) -> RunConfig:
    return RunConfig.for_task("csv", data_dir=str(path), target=target, **options)


@pytest.mark.parametrize("cell", ["1e308", "-1e308", "1e39", "inf", "-Infinity"])
def test_numbers_a_model_cannot_hold_are_refused_naming_column_line_and_value(tmp_path, cell):
    table = write_table(tmp_path / "t.csv", cell)
    with pytest.raises(DataError) as caught:
        load_task(csv_config(table))
    assert str(caught.value).startswith(f"{table} line 5: 'x' is {cell!r}, not a finite number within ±3.4e38")


def test_a_regression_target_a_model_cannot_hold_is_refused(tmp_path):
    table = write_table(tmp_path / "t.csv", "1e39", column="y")
    with pytest.raises(DataError, match=r"line 5: 'y' is '1e39', not a finite number"):
        load_task(csv_config(table, target="y"))


@pytest.mark.parametrize("cell", ["-nan", "+NaN"])
def test_a_nan_of_any_spelling_is_a_missing_value(tmp_path, cell):
    """As 'nan' always was: the column stays a number column and the row goes (or is filled)."""
    data = load_task(csv_config(write_table(tmp_path / "t.csv", cell)))
    assert data.meta.columns[0]["type"] == "number"
    assert any("dropped 1 of 30 rows" in note for note in data.notes)
    filled = load_task(csv_config(tmp_path / "t.csv", missing="impute"))
    assert filled.meta.columns[0]["type"] == "number" and sum(filled.sizes().values()) == 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Finished one-epoch runs of the csv task (on write_table) and of iris."""
    root = tmp_path_factory.mktemp("runs")
    table = write_table(root / "t.csv")
    done = {"csv": train(root / "out", "csv", data_dir=str(table), target="label", epochs=1)[0],
            "iris": train(root / "out", "iris", epochs=1)[0]}
    return {name: run.run_dir for name, run in done.items()}


@pytest.mark.parametrize("task, row, complaint", [
    ("csv", "1e39,2", "row 1: 'x' is '1e39', not a finite number within ±3.4e38"),
    ("csv", "inf,2", "row 1: 'x' is 'inf', not a finite number"),
    ("csv", "-nan,2", "row 1: 'x' has no value"),
    ("iris", "1e39,1,1,1", "'1e39' is not a finite number within ±3.4e38"),
    ("iris", "-1e308,1,1,1", "'-1e308' is not a finite number within ±3.4e38"),
])
def test_predict_refuses_what_training_refuses(cli, runs, task, row, complaint):
    assert complaint in one_line(cli("predict", runs[task], "--input", row))


def test_predict_from_a_csv_file_refuses_them_too(cli, runs, tmp_path):
    (tmp_path / "rows.csv").write_text("y,x\n1,0.5\n2,1e39\n")
    assert "row 2: 'x' is '1e39'" in one_line(cli("predict", runs["csv"], "--csv", "rows.csv"))


# ---- wide tables --------------------------------------------------------------------------------


def test_a_table_of_20000_columns_loads(tmp_path):
    """Column checks and fits are linear in the columns (100,000 load in seconds)."""
    columns = 20_000
    rng = np.random.default_rng(0)
    values = rng.normal(size=(20, columns)).round(3).astype(str)
    values[:, ::1000] = np.array(["red", "green"] * 10)[:, None]  # some text columns, both values in each class
    labels = np.array(["a", "a", "b", "b"] * 5)
    lines = [",".join([*(f"c{i}" for i in range(columns)), "label"])]
    lines += [",".join([*row, label]) for row, label in zip(values, labels)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    data = load_task(csv_config(tmp_path / "wide.csv"))
    kinds = [column["type"] for column in data.meta.columns]
    assert len(kinds) == columns and kinds.count("text") == columns // 1000
    assert data.meta.input_shape == [columns - columns // 1000 + 2 * (columns // 1000)]
