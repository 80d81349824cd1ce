"""Image folders: one sub-folder per class, decoded per sample through a DataLoader (engine.data.loader).

``DIR/train/<class>/*`` (with optional ``val/`` and ``test/`` beside it) or ``DIR/<class>/*``
alone, split with the task's fixed seed. Unlike the MNIST-sized sets, such folders can hold
photos of any size and number, so images are read, converted to one mode and size, augmented
(training split only) and normalised per sample in DataLoader workers, with pinned memory and
non-blocking copies on CUDA.
"""

from __future__ import annotations

import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from engine.errors import DataError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
DEFAULT_SIZE = 64
STATS_SAMPLE = 256  # images read to estimate the per-channel mean and std


@dataclass
class Listing:
    """The image files of one split and their class indices."""

    paths: list[Path]
    labels: list[int]


def scan(root: str | Path | None, task: str) -> tuple[dict[str, Listing], list[str]]:
    """The folder's splits (``train`` and any of ``val``, ``test`` it has) and its class names."""
    if root is None:
        raise DataError(f"{task}: give the image folder with --data-dir DIR (one sub-folder per class)",
                        option="data_dir")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{task}: {root} is not a folder; --data-dir needs a folder of class folders",
                        option="data_dir")
    parts = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    if "train" not in parts:
        if parts:
            raise DataError(f"{root} has {', '.join(parts)}/ but no train/ folder", option="data_dir")
        parts = {"train": root}
    classes = sorted(p.name for p in parts["train"].iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = f"only the class '{classes[0]}'" if classes else "no class folders"
        raise DataError(f"{parts['train']} has {found}; an image folder needs a sub-folder per class, at least two",
                        option="data_dir")
    listings = {name: _list(folder, classes) for name, folder in parts.items()}
    for name, listing in listings.items():
        if not listing.paths:
            raise DataError(f"{parts[name]} holds no images ({', '.join(sorted(EXTENSIONS))})", option="data_dir")
    empty = [c for i, c in enumerate(classes) if i not in set(listings["train"].labels)]
    if empty:
        raise DataError(f"{parts['train']}: the class folder(s) {', '.join(empty)} hold no images", option="data_dir")
    _check_images(root, [path for listing in listings.values() for path in listing.paths])
    return listings, classes


def _check_images(root: Path, paths: list[Path]) -> None:
    """Refuse files that are not usable images before training, naming the first and counting the rest.

    Every image of every split is decoded, not only opened: a file damaged past its header would
    otherwise fail the run only when its split is reached (the test split at the very end, and
    every resume again), and a damaged file is refused rather than skipped so that the data a
    run learns from is always the whole folder. Decoding runs on threads (Pillow's decoders
    release the GIL) and JPEGs decode at an eighth of their size (still every byte of them),
    so thousands of photos take seconds.
    """
    with _bombs_refused(), ThreadPoolExecutor() as pool:
        problems = [problem for problem in pool.map(_problem, paths) if problem]
    if problems:
        more = f" (and {len(problems) - 1} more file(s) like it)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}; remove or move such files out of {root}", option="data_dir")


def _problem(path: Path) -> str | None:
    """Why the image file at ``path`` cannot be trained on, or None when it decodes."""
    try:
        with _read(path) as image:
            image.draft(image.mode, (1, 1))  # JPEG only: decode at the smallest scale
            image.load()
    except DataError as exc:
        return str(exc)
    return None


def _list(folder: Path, classes: list[str]) -> Listing:
    strays = [p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes and not p.name.startswith(".")]
    if strays:
        raise DataError(f"{folder} has class folder(s) {', '.join(strays)} that train/ does not have",
                        option="data_dir")
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")) if (folder / name).is_dir() else []:
            if path.suffix.lower() in EXTENSIONS and path.is_file():
                paths.append(path)
                labels.append(index)
    return Listing(paths, labels)


def open_image(path: Path, mode: str, size: tuple[int, int]) -> Image.Image:
    """An image file in ``mode`` ('L' or 'RGB') at ``size`` (width, height), or a DataError."""
    with _bombs_refused(), _read(path) as image:
        return image.convert(mode).resize(size, Image.Resampling.BILINEAR)


def choose_mode(paths: list[Path]) -> str:
    """'L' when the sampled images are all grayscale, else 'RGB' (mixed folders become RGB)."""
    for path in paths[:STATS_SAMPLE]:
        with _bombs_refused(), _read(path) as image:
            if image.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                return "RGB"
    return "L"


@contextmanager
def _bombs_refused() -> Iterator[None]:
    """Pillow's warning of an image over its pixel limit raised as an error while images are opened.

    Pillow refuses images over twice ``Image.MAX_IMAGE_PIXELS`` but only warns above it, and then
    decodes gigabytes; both are refused here, the limit left as it is. The warnings filter is
    process-wide: threads that open images run inside one such block and never enter their own.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


@contextmanager
def _read(path: Path) -> Iterator[Image.Image]:
    """The image file at ``path``, opened; whatever fails in opening or decoding it inside the
    block is a DataError naming the file (a decompression bomb with its number of pixels)."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's message holds the image's size
        size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
        raise DataError(f"{path} is an image of {size}, over the {Image.MAX_IMAGE_PIXELS:,} torchdeck decodes "
                        f"(a decompression bomb?)") from None
    except DataError:
        raise
    except Exception as exc:  # a damaged file fails in many ways, from many decoders; all mean the same here
        raise DataError(f"{path} is not an image torchdeck can read ({type(exc).__name__})") from None


def channel_stats(paths: list[Path], mode: str, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a fixed sample of training images, as tensors (C, 1, 1)."""
    # imported here, as in the other two: torchvision costs every other task a third of a second
    from torchvision import transforms

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(paths), size=min(len(paths), STATS_SAMPLE), replace=False)
    to_tensor = transforms.ToTensor()
    pixels = torch.stack([to_tensor(open_image(paths[i], mode, (size, size))) for i in sample])
    channels = pixels.shape[1]
    flat = pixels.transpose(0, 1).reshape(channels, -1)
    return flat.mean(dim=1).view(-1, 1, 1), flat.std(dim=1).clamp_min(1e-6).view(-1, 1, 1)


def augmentation() -> list:
    """The cats-vs-dogs tutorial's training augmentation."""
    from torchvision import transforms

    return [
        transforms.RandomHorizontalFlip(0.5),
        transforms.RandomRotation(10),
        transforms.RandomAffine(degrees=0, translate=(0.2, 0.2)),
    ]


class FolderDataset(Dataset):
    """Image ``i`` of a listing as a normalised tensor; augmented when ``augment``."""

    def __init__(self, paths: list[Path], mode: str, size: int, mean: torch.Tensor, std: torch.Tensor,
                 augment: bool) -> None:
        from torchvision import transforms

        self.paths, self.mode, self.size = paths, mode, size
        self.transform = transforms.Compose([
            *(augmentation() if augment else []),
            transforms.ToTensor(),
            transforms.Normalize(mean.flatten().tolist(), std.flatten().tolist()),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(open_image(self.paths[index], self.mode, (self.size, self.size)))

