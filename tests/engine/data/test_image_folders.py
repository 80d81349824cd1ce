"""Image folders: PIL-drawn shapes on disk → DataLoader → a trained CNN → predict."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest
from conftest import train
from PIL import Image, ImageDraw

from engine.config import RunConfig
from engine.errors import DataError
from engine.train.run import Run

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: np.random.Generator, size: int | None = None, mode: str = "RGB") -> Image.Image:
    """A ``shape`` of a random colour at a random place on a random background; sizes vary."""
    side = size or int(rng.integers(40, 90))
    image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 90, 3)))
    pen = ImageDraw.Draw(image)
    extent = side * rng.uniform(0.55, 0.8)
    left, top = rng.uniform(0, side - extent, 2)
    box = (left, top, left + extent, top + extent)
    colour = tuple(int(v) for v in rng.integers(200, 256, 3))
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(left + extent / 2, top), (left, top + extent), (left + extent, top + extent)], fill=colour)
    return image.convert(mode)


def make_folder(root, per_class: int = 50, shapes=SHAPES, seed: int = 0):
    """``root/<shape>/<n>.png|jpg`` with mixed sizes, formats and a few grayscale images."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            mode = "L" if n % 10 == 0 else "RGB"
            suffix = ".jpg" if n % 3 == 0 else ".png"
            draw(shape, rng, mode=mode).save(root / shape / f"{n}{suffix}")
    return root


def test_a_folder_of_class_folders_trains_to_high_accuracy(out, tmp_path):
    folder = make_folder(tmp_path / "shapes")
    run, events = train(out, "image-folder", data_dir=str(folder), image_size=32, epochs=15)
    started, finished = events[0], events[-1]
    assert started.sizes == {"train": 105, "val": 15, "test": 30}
    meta = run.data.meta
    assert meta.class_names == list(sorted(SHAPES)) and meta.kind == "multiclass"
    assert meta.input_shape == [3, 32, 32] and meta.image_mode == "RGB"
    assert finished.name == "run_finished" and finished.test["accuracy"] >= 0.95


def test_a_run_stops_its_dataloader_workers_when_it_ends(out, tmp_path, monkeypatch):
    monkeypatch.setattr("engine.data.loader._workers", lambda samples, device: 2)  # workers even here
    folder = make_folder(tmp_path / "shapes", per_class=20)
    run = Run.new(RunConfig.for_task("image-folder", data_dir=str(folder), image_size=16, epochs=2, out=str(out)))
    run.start()
    list(run.events)
    assert run.wait().name == "run_finished"
    # left to the garbage collector, they would be stopped by whatever thread collects the run
    assert multiprocessing.active_children() == []


def test_train_val_test_folders_are_used_as_given(out, tmp_path):
    for split, count in (("train", 20), ("val", 5), ("test", 7)):
        make_folder(tmp_path / "data" / split, per_class=count, shapes=("circle", "square"), seed=len(split))
    run, events = train(out, "image-folder", data_dir=str(tmp_path / "data"), image_size=24, epochs=1)
    assert events[0].sizes == {"train": 40, "val": 10, "test": 14}
    assert run.data.meta.kind == "binary"  # two classes: one logit, BCE-with-logits


def test_cats_vs_dogs_preset_is_the_tutorial_setup(out, tmp_path):
    rng = np.random.default_rng(1)
    for label, shape in (("cat", "circle"), ("dog", "square")):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for n in range(12):
            draw(shape, rng).save(tmp_path / "pets" / label / f"{n}.png")
    config = RunConfig.for_task("cats-vs-dogs", data_dir=str(tmp_path / "pets"), epochs=1, out=str(out))
    assert (config.model, config.optimizer, config.lr, config.image_size) == ("convnet", "rmsprop", 1e-4, 180)
    assert config.augment and config.monitor == "val_loss" and config.patience > 0
    run = Run.new(config)
    assert run.data.meta.input_shape == [3, 180, 180] and run.data.meta.kind == "binary"
    assert run.data.splits["train"].dataset.transform.transforms[0].__class__.__name__ == "RandomHorizontalFlip"
    assert run.data.splits["val"].dataset.transform.transforms[0].__class__.__name__ == "ToTensor"
    run.start()
    events = list(run.events)
    assert events[0].parameters == 1_009_473  # the tutorial's CNN: ... Linear(256 * 11 * 11, 1)
    assert events[-1].name == "run_finished"


def test_predict_an_image_of_a_folder_task(cli, tmp_path):
    make_folder(tmp_path / "shapes")
    result = cli("train", "--task", "image-folder", "--data-dir", "shapes", "--image-size", "32", "--epochs", "15",
                 "--name", "shapes")
    assert result.code == 0, result.err
    draw("triangle", np.random.default_rng(99), size=70).save(tmp_path / "new.jpg")
    answer = json.loads(cli("predict", "checkpoints/shapes", "new.jpg", "--json").out)
    assert answer[0]["class"] == "triangle"


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "not a folder"),
        ({"only": 3}, "only the class 'only'"),
        ({"a": 3, "b": 0}, "the class folder(s) b hold no images"),
    ],
)
def test_unusable_folders_are_explained(tmp_path, layout, message):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for n in range(count):
            draw("circle", rng).save(root / name / f"{n}.png")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Run.new(RunConfig.for_task("image-folder", data_dir=str(root), out=str(tmp_path / "out")))
