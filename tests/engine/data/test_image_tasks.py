"""Image tasks end to end: IDX files on disk → tensors on the device → a trained model → predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shape_images, train, write_idx_pair
from PIL import Image


@pytest.fixture
def mnist_dir(tmp_path):
    """A test-only IDX pair (like ../shared/data/mnist-t10k) of 1,000 learnable images."""
    folder = tmp_path / "mnist"
    write_idx_pair(folder, "t10k", *shape_images(1000))
    return folder


def test_mnist_preset_is_the_seed_mlp(out, mnist_dir):
    run, events = train(out, "mnist", data_dir=str(mnist_dir), epochs=1)
    started = events[0]
    assert started.parameters == 397_510  # 784 -> 500 -> 10
    assert started.sizes == {"train": 800, "val": 100, "test": 100}
    meta = run.data.meta
    assert meta.input_shape == [1, 28, 28] and meta.image_mode == "L"
    assert float(meta.x_mean.flatten()[0]) == 0.5 and float(meta.x_scale.flatten()[0]) == 0.5
    assert meta.class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_training_on_idx_files_reaches_high_accuracy(out, mnist_dir, model):
    run, events = train(out, "mnist", data_dir=str(mnist_dir), model=model, epochs=3)
    assert events[-1].name == "run_finished"
    assert events[-1].test["accuracy"] >= 0.95


def test_predict_an_image_file_and_refuse_a_non_image(cli, mnist_dir, tmp_path):
    assert cli("train", "--task", "mnist", "--data-dir", mnist_dir, "--epochs", "3", "--name", "digits").code == 0
    images, labels = shape_images(20, seed=7)
    index = int(np.flatnonzero(labels == 3)[0])
    Image.fromarray(images[index]).resize((56, 56)).convert("RGB").save(tmp_path / "three.png")
    answer = json.loads(cli("predict", "checkpoints/digits", "three.png", "--json").out)
    assert answer[0]["class"] == "3" and answer[0]["input"] == "three.png"
    (tmp_path / "notes.png").write_text("not an image")
    refused = cli("predict", "checkpoints/digits", "notes.png")
    assert refused.code == 2 and "is not an image torchdeck can read" in refused.err
    tabular = cli("predict", "checkpoints/digits", "--input", "1,2,3")
    assert tabular.code == 2 and "takes images" in tabular.err


def test_evaluate_names_the_digit_classes(cli, mnist_dir):
    assert cli("train", "--task", "mnist", "--data-dir", mnist_dir, "--epochs", "2", "--name", "d").code == 0
    result = json.loads(cli("evaluate", "checkpoints/d", "--json").out)
    assert result["classes"] == [str(d) for d in range(10)] and result["samples"] == 100
    assert sum(map(sum, result["confusion_matrix"])) == 100


def test_missing_image_data_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHDECK_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr("engine.data.images._download", _no_network)
    result = cli("train", "--task", "mnist")
    assert result.code == 2
    line = result.err.strip()
    assert line.startswith("torchdeck: error: ") and "\n" not in line
    assert "t10k-images-idx3-ubyte" in line and "--data-dir" in line


def _no_network(*args, **kwargs):
    raise OSError("Name or service not known")
