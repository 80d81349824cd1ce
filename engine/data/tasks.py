"""The task catalog: data sets, their kind, their preset, and how they become tensors.

A task loads raw arrays (features and targets); :func:`load_task` splits them with a fixed
seed (stratified for classification), fits a StandardScaler on the training split only, and
puts every split on the device as tensors so that batches are cut by index with no DataLoader.
What preprocessing a trained model expects travels with its checkpoint as a :class:`TaskMeta`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from engine import usercode
from engine.catalog import Catalog
from engine.data.folders import (
    DEFAULT_SIZE,
    FolderDataset,
    channel_stats,
    choose_mode,
    scan,
)
from engine.data.images import load_image_set
from engine.data.loader import LoaderSplit
from engine.data.meta import RawData, TaskMeta, TaskSpec
from engine.data.split import SPLIT_SEED, Split, TaskData, split_rows
from engine.data.tables import load_csv
from engine.errors import DataError


def _sklearn(loader: str) -> Callable[[Any], RawData]:
    """One of scikit-learn's bundled data sets, by its loader's name (scikit-learn is imported only
    when such a task loads: it costs every other task a second of start-up)."""
    def load(config) -> RawData:
        from sklearn import datasets

        bunch = getattr(datasets, loader)()
        names = [str(n) for n in getattr(bunch, "target_names", [])]
        return RawData(bunch.data.astype(np.float32), bunch.target, list(map(str, bunch.feature_names)), names)

    return load


def _linear(config) -> RawData:
    """Seed 000's synthetic regression: x ~ N(0, 1), y = 2x + 1 + 0.1 noise, 1000 samples."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1)).astype(np.float32)
    y = 2 * x[:, 0] + 1 + 0.1 * rng.standard_normal(1000).astype(np.float32)
    return RawData(x, y, ["x"])


def load_task(config, device: torch.device | str = "cpu", meta: TaskMeta | None = None) -> TaskData:
    """The task's train/val/test splits as tensors on ``device``.

    With ``meta`` (from a checkpoint) the stored scaler is applied instead of a new one being
    fitted, so evaluation sees exactly the inputs training saw.
    """
    spec = TASKS.entry(config.task, "task")
    if spec.prepare is not None:
        return spec.prepare(spec, config, device, meta)
    raw = spec.load(config)
    if len(raw.x) < 10:
        raise DataError(f"task '{spec.name}' has only {len(raw.x)} samples; at least 10 are needed")
    parts = split_rows(spec, raw.y, config)
    train, val, test = parts["train"], parts["val"], parts["test"]
    if meta is None:
        meta = _fit_meta(spec, raw, train)
    x_all = meta.scale_inputs(raw.x)
    if spec.kind != "regression":
        y_all = torch.as_tensor(raw.y, dtype=torch.long)
        if spec.kind == "binary":
            y_all = y_all.float().unsqueeze(1)
    else:
        y_all = (torch.as_tensor(raw.y, dtype=torch.float32).unsqueeze(1) - meta.y_mean) / meta.y_scale
    splits = {
        name: Split(x_all[torch.as_tensor(rows)].to(device), y_all[torch.as_tensor(rows)].to(device))
        for name, rows in (("train", train), ("val", val), ("test", test))
    }
    return TaskData(meta, splits)


def _load_images(spec: TaskSpec, config, device, meta: TaskMeta | None) -> TaskData:
    """An image set decoded once into normalised float tensors on the device.

    MNIST-sized sets fit in memory many times over, so batches are cut by index like tables:
    no per-sample decoding or PIL work in the training loop.
    """
    parts = load_image_set(spec.image_set, config.data_dir)
    images, labels = parts.train
    held_out = split_rows(spec, labels.numpy(), config, held_out=("val",) if parts.test else ("val", "test"))
    rows = {name: (images, labels, index) for name, index in held_out.items()}
    if parts.test is not None:
        test_images, test_labels = parts.test
        rows["test"] = (test_images, test_labels, np.arange(len(test_labels)))
    if meta is None:
        meta = _image_meta(spec, images[torch.as_tensor(held_out["train"])], parts.class_names)
    splits = {}
    for name, (x, y, index) in rows.items():
        index = torch.as_tensor(index)
        splits[name] = Split(meta.scale_images(x[index].to(device)), y[index].to(device))
    return TaskData(meta, splits)


def _load_folder(spec: TaskSpec, config, device, meta: TaskMeta | None) -> TaskData:
    """An image folder's splits, decoded per batch through DataLoaders (see engine.data.loader)."""
    listings, classes = scan(config.data_dir, spec.name)
    kind = spec.kind if spec.kind != "auto" else ("binary" if len(classes) == 2 else "multiclass")
    if kind == "binary" and len(classes) != 2:
        raise DataError(f"{spec.name} needs exactly two class folders; {config.data_dir} has {len(classes)}",
                        option="data_dir")
    paths = {name: listing.paths for name, listing in listings.items()}
    targets = {name: np.asarray(listing.labels) for name, listing in listings.items()}
    missing = tuple(name for name in ("val", "test") if name not in listings)
    if missing:  # carve the splits the folder lacks out of train/, with the fixed seed
        all_paths, all_targets = paths["train"], targets["train"]
        for name, index in split_rows(replace(spec, kind=kind), all_targets, config, held_out=missing).items():
            paths[name], targets[name] = [all_paths[i] for i in index], all_targets[index]
    if meta is None:
        mode = choose_mode(paths["train"])
        size = config.image_size or DEFAULT_SIZE
        mean, std = channel_stats(paths["train"], mode, size, SPLIT_SEED)
        meta = TaskMeta(task=spec.name, kind=kind, input_shape=[len(mean), size, size], feature_names=[],
                        class_names=classes, x_mean=mean, x_scale=std, image_mode=mode)
    splits = {}
    for name in ("train", "val", "test"):
        y = torch.as_tensor(targets[name], dtype=torch.long)
        if kind == "binary":
            y = y.float().unsqueeze(1)
        dataset = FolderDataset(paths[name], meta.image_mode, meta.input_shape[1], meta.x_mean, meta.x_scale,
                                augment=config.augment and name == "train")
        splits[name] = LoaderSplit(dataset, y.to(device), device, config.seed)
    return TaskData(meta, splits)


def _image_meta(spec: TaskSpec, train_images: torch.Tensor, class_names: list[str]) -> TaskMeta:
    channels = train_images.shape[1]
    if spec.normalize is not None:
        mean = torch.full((channels, 1, 1), spec.normalize[0])
        std = torch.full((channels, 1, 1), spec.normalize[1])
    else:  # per-channel statistics of the training split, like the tables' scaler
        pixels = train_images.transpose(0, 1).reshape(channels, -1).float().div_(255)
        mean, std = pixels.mean(dim=1).view(-1, 1, 1), pixels.std(dim=1).view(-1, 1, 1)
    return TaskMeta(
        task=spec.name, kind=spec.kind, input_shape=list(train_images.shape[1:]), feature_names=[],
        class_names=list(class_names), x_mean=mean, x_scale=std, image_mode="L" if channels == 1 else "RGB",
    )


def _fit_meta(spec: TaskSpec, raw: RawData, train: np.ndarray) -> TaskMeta:
    # only the array tasks come here: scikit-learn's sets and the synthetic line
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(raw.x[train])
    y_mean, y_scale = 0.0, 1.0
    if spec.scale_target:
        target = StandardScaler().fit(raw.y[train].reshape(-1, 1))
        y_mean, y_scale = float(target.mean_[0]), float(target.scale_[0])
    class_names = raw.class_names
    if spec.kind != "regression" and not class_names:
        class_names = [str(c) for c in np.unique(raw.y)]
    return TaskMeta(
        task=spec.name,
        kind=spec.kind,
        input_shape=[raw.x.shape[1]],
        feature_names=raw.feature_names,
        class_names=class_names,
        x_mean=torch.as_tensor(scaler.mean_, dtype=torch.float32),
        x_scale=torch.as_tensor(scaler.scale_, dtype=torch.float32),
        y_mean=y_mean,
        y_scale=y_scale,
    )


# The image sets bring their own test split; given only one file pair (such as MNIST's t10k
# files), 10 % of it is held out for testing so that 80 % is left to train on.
IMAGE_SPLITS = dict(val_fraction=0.1, test_fraction=0.1)

# A user's own data set starts from this: a small mlp fits any input shape (it flattens).
OWN_PRESET = dict(model="mlp", hidden=[64], activation="relu", optimizer="adam", lr=1e-3, batch_size=32, epochs=20)


def _own_task(name: str) -> TaskSpec | None:
    """The task of a user's data set (``--task FILE.py:NAME``); None for a name that is no reference."""
    ref = usercode.parse(name)
    if ref is None:
        return None
    from engine.data import owndata

    return TaskSpec(name, f"your own data set {ref.name} from {ref.source}", "auto", None, OWN_PRESET,
                    source="your code", inputs="any", prepare=owndata.prepare)


TASKS: Catalog[TaskSpec] = Catalog(
    "task",
    [
        TaskSpec(
            "iris", "Iris flowers: 150 samples, 4 measurements, 3 species (tutorial preset)", "multiclass",
            _sklearn("load_iris"),
            dict(model="mlp", hidden=[16, 8], activation="relu", dropout=0.2, optimizer="adam",
                 lr=0.01, scheduler="step", step_size=30, gamma=0.1, batch_size=16, epochs=100),
        ),
        TaskSpec(
            "breast-cancer", "Breast cancer diagnosis: 569 samples, 30 features, binary (tutorial preset)",
            "binary", _sklearn("load_breast_cancer"),
            dict(model="mlp", hidden=[64, 32], activation="relu", optimizer="adam", lr=1e-3,
                 batch_size=32, epochs=100),
        ),
        TaskSpec(
            "linear", "Synthetic line y = 2x + 1 + noise: 1000 samples (tutorial preset)", "regression",
            _linear,
            dict(model="mlp", hidden=[32, 32], activation="relu", optimizer="adam", lr=1e-3,
                 batch_size=32, epochs=50),
            source="generated",
        ),
        TaskSpec(
            "wine", "Wine cultivars: 178 samples, 13 chemical features, 3 classes", "multiclass",
            _sklearn("load_wine"),
            dict(model="mlp", hidden=[32, 16], activation="relu", dropout=0.1, optimizer="adam",
                 lr=0.01, scheduler="step", step_size=30, gamma=0.1, batch_size=16, epochs=60),
        ),
        TaskSpec(
            "digits", "Handwritten digits: 1797 images of 8x8 pixels, 10 classes", "multiclass",
            _sklearn("load_digits"),
            dict(model="mlp", hidden=[128, 64], activation="relu", dropout=0.1, optimizer="adam",
                 lr=1e-3, scheduler="cosine", batch_size=64, epochs=40),
        ),
        TaskSpec(
            "mnist", "Handwritten digits: 70,000 images of 28x28 pixels, 10 classes (tutorial preset)",
            "multiclass", None,
            dict(model="mlp", hidden=[500], activation="relu", optimizer="adam", lr=1e-3,
                 batch_size=64, epochs=5, **IMAGE_SPLITS),
            source="torchvision (download, or --data-dir with the IDX files)", reads_data_dir=True,
            image_set="mnist", normalize=(0.5, 0.5), inputs="images", prepare=_load_images,
        ),
        TaskSpec(
            "fashion-mnist", "Zalando clothing: 70,000 images of 28x28 pixels, 10 classes", "multiclass", None,
            dict(model="cnn", hidden=[128], dropout=0.25, optimizer="adam", lr=1e-3, batch_size=64, epochs=10,
                 **IMAGE_SPLITS),
            source="torchvision (download, or --data-dir with the IDX files)", reads_data_dir=True,
            image_set="fashion-mnist", inputs="images", prepare=_load_images,
        ),
        TaskSpec(
            "cifar10", "Small photos: 60,000 colour images of 32x32 pixels, 10 classes", "multiclass", None,
            dict(model="cnn", hidden=[256], dropout=0.3, batch_norm=True, optimizer="adam", lr=1e-3,
                 batch_size=128, epochs=20, **IMAGE_SPLITS),
            source="torchvision (download, or --data-dir with cifar-10-batches-py)", reads_data_dir=True,
            image_set="cifar10", inputs="images", prepare=_load_images,
        ),
        TaskSpec(
            "image-folder", "Your images: --data-dir DIR with one sub-folder per class (train/ val/ test/ optional)",
            "auto", None,
            dict(model="cnn", hidden=[128], dropout=0.25, optimizer="adam", lr=1e-3, batch_size=32, epochs=10,
                 image_size=64),
            source="your folder", reads_data_dir=True, inputs="images", prepare=_load_folder,
        ),
        TaskSpec(
            "cats-vs-dogs", "Cats vs dogs photos from an image folder, the tutorial's CNN at 180x180 (tutorial preset)",
            "binary", None,
            dict(model="convnet", optimizer="rmsprop", lr=1e-4, batch_size=32, epochs=30, image_size=180,
                 augment=True, monitor="val_loss", patience=5),
            source="your folder (Kaggle Dogs vs Cats)", reads_data_dir=True, inputs="images", prepare=_load_folder,
        ),
        TaskSpec(
            "diabetes", "Diabetes progression: 442 patients, 10 features, regression", "regression",
            _sklearn("load_diabetes"),
            dict(model="mlp", hidden=[64, 32], activation="relu", dropout=0.1, optimizer="adamw",
                 lr=1e-3, weight_decay=1e-2, batch_size=32, epochs=200, patience=30),
            scale_target=True,
        ),
        TaskSpec(
            "csv", "Your own table: --data-dir FILE.csv --target COLUMN", "auto", None,
            dict(model="mlp", hidden=[64, 32], activation="relu", dropout=0.1, optimizer="adam", lr=1e-3,
                 batch_size=32, epochs=50, patience=10),
            source="your CSV file", reads_data_dir=True, prepare=load_csv,
        ),
    ],
    _own_task,
)
