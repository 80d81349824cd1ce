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
MAX_IMAGES = 1_000_000  # per IDX file; MNIST-like sets hold 70,000, a header claiming more is refused unread
CIFAR_BATCH_BYTES = 128 * 2**20  # a CIFAR-10 batch is 31 MB; a file inflating to more is refused


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


class _DataFile:
    """A data file read in pieces, inflated as it is read when gzipped (whatever its name says).

    Nothing is inflated beyond what is asked for: a gzip bomb (megabytes that inflate to
    gigabytes) is refused once it holds more than the reader expects. Every failure is a
    DataError naming the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # closed by __exit__
            self.gzipped = self._file.read(2) == b"\x1f\x8b"
            self._file.seek(0)
        except OSError as exc:
            raise DataError(f"{path} cannot be read ({exc.strerror or exc})") from None
        self._stream = gzip.GzipFile(fileobj=self._file) if self.gzipped else self._file

    def __enter__(self) -> _DataFile:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the content."""
        try:
            return self._stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            if not self.gzipped:
                raise DataError(f"{self.path} cannot be read ({first_line(exc)})") from None
            raise DataError(f"{self.path} is a damaged or truncated gzip file ({first_line(exc)}); "
                            f"fetch it again") from None

    def read_rest(self, size: int, what: str) -> bytes:
        """The rest of the content, which must be exactly ``size`` bytes (``what`` its header says)."""
        data = self.read(size)
        if len(data) < size or self.read(1):
            fewer = "less" if len(data) < size else "more"
            raise DataError(f"{self.path} holds {fewer} data than its header says ({what}); "
                            f"it is damaged or truncated, fetch it again")
        return data


def _idx_header(file: _DataFile, dims: int) -> list[int]:
    """The sizes in an IDX file's header (MNIST's format: magic 0x0000080<dims>, big-endian sizes)."""
    header = file.read(4 * (dims + 1))
    if len(header) < 4 * (dims + 1):
        raise DataError(f"{file.path} is too short to be an IDX file; fetch it again")
    magic, *shape = struct.unpack(f">{dims + 1}I", header)
    if magic != 0x800 + dims:
        raise DataError(f"{file.path} is not an IDX file of bytes with {dims} dimension(s) (magic {magic:#010x})")
    return shape


def _read_idx_pair(spec: ImageSetSpec, paths: list[Path]) -> Pair:
    """An IDX pair of images and labels, both headers checked before any pixel is read: the
    images must be the set's size, as many as the labels, and at least one but at most
    MAX_IMAGES; then exactly as many bytes as the headers say are inflated, and no more."""
    images_path, labels_path = paths
    with _DataFile(images_path) as images_file, _DataFile(labels_path) as labels_file:
        count, height, width = _idx_header(images_file, dims=3)
        (labels,) = _idx_header(labels_file, dims=1)
        if (height, width) != (spec.size, spec.size):
            raise DataError(f"{images_path} holds images of 1x{height}x{width}, not 1x{spec.size}x{spec.size}")
        if count != labels:
            raise DataError(f"{images_path} holds {count} images but {labels_path} holds {labels} labels")
        if count == 0:
            raise DataError(f"{images_path} holds no images")
        if count > MAX_IMAGES:
            raise DataError(f"{images_path} claims {count:,} images, more than the {MAX_IMAGES:,} torchdeck "
                            f"reads from an IDX file; it is damaged or not an MNIST-like set")
        pixels = images_file.read_rest(count * height * width, f"{count}x{height}x{width}")
        classes = labels_file.read_rest(count, f"{count} labels")
    images = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(count, 1, height, width)
    return images, torch.frombuffer(bytearray(classes), dtype=torch.uint8).long()


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
        with _DataFile(path) as file:
            content = file.read(CIFAR_BATCH_BYTES + 1)
        if len(content) > CIFAR_BATCH_BYTES:
            raise DataError(f"{path} holds over {CIFAR_BATCH_BYTES // 2**20} MB, more than a CIFAR-10 batch "
                            f"(31 MB); it is not one")
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
