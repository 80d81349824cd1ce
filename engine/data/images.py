"""The image data sets (MNIST, Fashion-MNIST, CIFAR-10) as uint8 tensors, from files on disk.

The files are read by this module, not through torchvision's data set classes: those insist on
the complete official set (MNIST refuses a folder without the training files, CIFAR10 checks the
md5 of every batch), while a user often has only part of it, gzipped or not, in a folder of
their own. torchvision is used for one thing only, downloading, and is imported only then (its
import is slow). Everything is decoded once into whole tensors; the caller splits them.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.errors import DataError
from engine.text import first_line

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ImageSetSpec:
    """One image data set: how torchvision downloads it and which files hold it."""

    name: str
    dataset: str  # the torchvision.datasets class that downloads it
    folder: str  # the folder that class keeps the files in, under its root
    class_names: tuple[str, ...]
    channels: int
    size: int
    train_files: tuple[str, ...]  # the official file names; a ".gz" file may also be decompressed
    test_files: tuple[str, ...]
    read: Callable[[ImageSetSpec, list[Path]], Pair]  # one split's files to (images, labels)


@dataclass
class ImageParts:
    """A data set as loaded: images uint8 (N, C, H, W), labels int64 (N,).

    ``test`` is the set's own test split; it is None when only one split's files were there,
    which then come back as ``train`` for the caller to split.
    """

    train: Pair
    test: Pair | None
    class_names: list[str]


def load_image_set(name: str, data_dir: str | None) -> ImageParts:
    """Images and labels of the set ``name``, from ``data_dir`` or the local cache.

    Without ``data_dir`` the cache folder is used, and filled by torchvision's download when the
    files are not there. Anything missing, damaged or inconsistent is a one-line DataError.
    """
    spec = IMAGE_SETS[name]
    try:
        if data_dir is not None:
            return _load_given(spec, Path(data_dir).expanduser())
        return _load_cached(spec, default_data_dir(name))
    except DataError as exc:
        raise DataError(f"{name}: {exc}", option="data_dir") from None


def default_data_dir(name: str) -> Path:
    """~/.cache/torchdeck/<name>, or $TORCHDECK_DATA/<name> when that variable is set."""
    root = os.environ.get("TORCHDECK_DATA")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "torchdeck") / name


def _load_given(spec: ImageSetSpec, root: Path) -> ImageParts:
    if not root.is_dir():
        raise DataError(f"--data-dir {root} is not a folder; give a folder holding {_expected(spec)}")
    found = _locate(spec, root)
    if found is None:
        raise DataError(
            f"none of the data files are in {root} (nor in its raw/, {spec.folder}/ or {spec.folder}/raw/ "
            f"folders); expected {_expected(spec)}"
        )
    return _read(spec, *found)


def _load_cached(spec: ImageSetSpec, root: Path) -> ImageParts:
    found = _locate(spec, root)
    if found is None:
        try:
            _download(spec, root)
        except Exception:  # any failure of the download means the same to the user: no data
            raise DataError(
                f"the data is not on this machine and could not be downloaded (no network?); "
                f"put {_expected(spec)} in {root} or pass --data-dir DIR"
            ) from None
        found = _locate(spec, root)
        if found is None:
            raise DataError(f"torchvision's download left none of {_expected(spec)} in {root}")
    return _read(spec, *found)


def _download(spec: ImageSetSpec, root: Path) -> None:
    """torchvision's download of the set into ``root``, all or nothing.

    It downloads into a hidden sibling folder, and only a complete download is moved into
    ``root``: an interrupted or failed one is deleted, never left to be read as data next time.
    """
    import torchvision.datasets

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-download-", dir=root.parent))
    try:
        getattr(torchvision.datasets, spec.dataset)(str(staging), train=True, download=True)
        root.mkdir(exist_ok=True)
        os.replace(staging / spec.folder, root / spec.folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _expected(spec: ImageSetSpec) -> str:
    return f"{', '.join(spec.train_files + spec.test_files)} (or only {', '.join(spec.test_files)})"


def _locate(spec: ImageSetSpec, root: Path) -> tuple[list[Path], list[Path]] | None:
    """The set's train and test files (either may be empty) in the first folder that holds any.

    The files may be in ``root`` itself or where torchvision keeps them under its root
    (``MNIST/raw``, ``cifar-10-batches-py``); a split with some of its files is an error,
    as reading it would silently leave data out.
    """
    for folder in (root, root / "raw", root / spec.folder, root / spec.folder / "raw"):
        splits = [[_find_file(folder, name) for name in names] for names in (spec.train_files, spec.test_files)]
        if not any(path for paths in splits for path in paths):
            continue
        for names, paths in zip((spec.train_files, spec.test_files), splits):
            missing = [name for name, path in zip(names, paths) if path is None]
            if 0 < len(missing) < len(names):
                present = [name for name, path in zip(names, paths) if path is not None]
                raise DataError(f"{folder} has {', '.join(present)} but not {', '.join(missing)}; add the missing files")
        train, test = ([path for path in paths if path] for paths in splits)
        return train, test
    return None


def _find_file(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, preferring its decompressed form (faster) for a ``.gz`` name."""
    for candidate in dict.fromkeys((name.removesuffix(".gz"), name)):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _read(spec: ImageSetSpec, train: list[Path], test: list[Path]) -> ImageParts:
    splits = [_read_split(spec, paths) for paths in (train, test) if paths]
    return ImageParts(splits[0], splits[1] if len(splits) == 2 else None, list(spec.class_names))


def _read_split(spec: ImageSetSpec, paths: list[Path]) -> Pair:
    """One split's images and labels, checked against what the models will be built for."""
    images, labels = spec.read(spec, paths)
    files = ", ".join(str(path) for path in paths)
    if len(images) == 0:
        raise DataError(f"{files} hold no images")
    if tuple(images.shape[1:]) != (spec.channels, spec.size, spec.size):
        shape = "x".join(map(str, images.shape[1:]))
        raise DataError(f"{files} hold images of {shape}, not {spec.channels}x{spec.size}x{spec.size}")
    if labels.min() < 0 or labels.max() >= len(spec.class_names):
        raise DataError(f"{files} hold labels outside 0..{len(spec.class_names) - 1}")
    return images, labels


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzipped (whatever its name says)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged or truncated gzip file ({first_line(exc)}); fetch it again") from None


def _read_idx(path: Path, dims: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format): magic 0x0000080<dims>, big-endian sizes."""
    data = _read_bytes(path)
    header = 4 * (dims + 1)
    if len(data) < header:
        raise DataError(f"{path} is too short to be an IDX file; fetch it again")
    magic, *shape = struct.unpack(f">{dims + 1}I", data[:header])
    if magic != 0x800 + dims:
        raise DataError(f"{path} is not an IDX file of bytes with {dims} dimension(s) (magic {magic:#010x})")
    if len(data) - header != np.prod(shape):
        raise DataError(
            f"{path} holds {len(data) - header} bytes of data where its header says {'x'.join(map(str, shape))}; "
            f"it is damaged or truncated, fetch it again"
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(*shape)


def _read_idx_pair(spec: ImageSetSpec, paths: list[Path]) -> Pair:
    images_path, labels_path = paths
    images, labels = _read_idx(images_path, dims=3), _read_idx(labels_path, dims=1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return images.unsqueeze(1), labels.long()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches, which are plain dicts of a numpy array, lists and strings.

    A pickle can call anything while it loads, and a --data-dir may come from anywhere; so only
    what numpy (old or new, Python 2 or 3 pickles) needs to rebuild an array is allowed.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR batch needs")
        return super().find_class(module, name)


def _read_cifar_batches(spec: ImageSetSpec, paths: list[Path]) -> Pair:
    """CIFAR-10's python batches: dicts with ``data`` (N x 3072 uint8, each row the red, green
    then blue 32x32 planes, so already C, H, W) and ``labels`` (N ints)."""
    width = spec.channels * spec.size * spec.size
    images, labels = [], []
    for path in paths:
        content = _read_bytes(path)
        try:
            batch = _ArrayUnpickler(io.BytesIO(content), encoding="latin1").load()
            batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
            data, batch_labels = batch["data"], np.asarray(batch["labels"], dtype=np.int64)
        except Exception as exc:  # a damaged pickle fails in many ways; all mean the same here
            raise DataError(f"{path} is not a readable CIFAR-10 batch ({first_line(exc)})") from None
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == width and batch_labels.shape == (len(data),)):
            raise DataError(f"{path} is not a CIFAR-10 batch: expected uint8 data of N x {width} with N labels")
        images.append(torch.from_numpy(np.ascontiguousarray(data)).view(-1, spec.channels, spec.size, spec.size))
        labels.append(torch.from_numpy(batch_labels))
    return torch.cat(images), torch.cat(labels)


_MNIST_FILES = dict(
    train_files=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    test_files=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    channels=1, size=28, read=_read_idx_pair,
)

# Class names as torchvision's classes give them (a test checks they still agree), written out so
# that loading never imports torchvision; MNIST's are the bare digits.
IMAGE_SETS: dict[str, ImageSetSpec] = {
    spec.name: spec
    for spec in (
        ImageSetSpec("mnist", "MNIST", "MNIST", tuple("0123456789"), **_MNIST_FILES),
        ImageSetSpec(
            "fashion-mnist", "FashionMNIST", "FashionMNIST",
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            **_MNIST_FILES,
        ),
        ImageSetSpec(
            "cifar10", "CIFAR10", "cifar-10-batches-py",
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            channels=3, size=32,
            train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
            read=_read_cifar_batches,
        ),
    )
}
