"""engine.data.images: the image sets from files written here in their official formats, no network."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from conftest import write_idx

from engine.data.images import IMAGE_SETS, default_data_dir, load_image_set
from engine.errors import DataError

MNIST_T10K = Path(__file__).resolve().parents[4] / "shared" / "data" / "mnist-t10k"  # only beside a checkout
SIZES = {"train": 12, "t10k": 6}


def mnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    n = SIZES[split]
    return (np.arange(n * 28 * 28) % 251).reshape(n, 28, 28).astype(np.uint8), np.arange(n) % 10


def write_mnist(folder: Path, splits=("train", "t10k"), gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        images, labels = mnist_arrays(split)
        write_idx(folder / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels, gz)
    return folder


def assert_mnist_split(pair, split: str):
    images, labels = pair
    expected_images, expected_labels = mnist_arrays(split)
    assert images.dtype == torch.uint8 and images.shape == (SIZES[split], 1, 28, 28)
    assert labels.dtype == torch.int64
    assert torch.equal(images[:, 0], torch.from_numpy(expected_images))
    assert labels.tolist() == expected_labels.tolist()


CIFAR_BATCHES = {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 3}


def cifar_arrays(name: str) -> tuple[np.ndarray, list[int]]:
    n, seed = CIFAR_BATCHES[name], int(name[-1]) if name[-1].isdigit() else 0
    return (np.arange(n * 3072) + seed).reshape(n, 3072).astype(np.uint8), [(seed + i) % 10 for i in range(n)]


def write_cifar(folder: Path, names=tuple(CIFAR_BATCHES), text_keys: bool = False, old_numpy: bool = False) -> Path:
    """A cifar-10-batches-py folder in the official format: pickled dicts of a uint8 array and lists.

    ``text_keys`` gives str keys (what Python 2's pickles of the official files load as);
    ``old_numpy`` names numpy.core as numpy 1 and the official files do.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def key(k: str):
        return k if text_keys else k.encode()

    for name in names:
        data, labels = cifar_arrays(name)
        blob = pickle.dumps({key("batch_label"): name, key("labels"): labels, key("data"): data,
                             key("filenames"): [f"{i}.png" for i in range(len(labels))]}, protocol=2)
        (folder / name).write_bytes(blob.replace(b"numpy._core.", b"numpy.core.") if old_numpy else blob)
    meta = {key("label_names"): IMAGE_SETS["cifar10"].class_names, key("num_vis"): 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def expected_cifar(names) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = [cifar_arrays(name) for name in names]
    images = np.concatenate([data for data, _ in arrays]).reshape(-1, 3, 32, 32)
    return torch.from_numpy(images), torch.tensor([label for _, labels in arrays for label in labels])


def data_error(name: str, folder) -> str:
    with pytest.raises(DataError) as caught:
        load_image_set(name, str(folder))
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    return message


# ---- MNIST family: IDX files ----


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_in_the_folder_gzipped_or_not(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    parts = load_image_set("mnist", str(tmp_path))
    assert_mnist_split(parts.train, "train")
    assert_mnist_split(parts.test, "t10k")
    assert parts.class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize(
    "files, given",
    [("MNIST/raw", "."), ("MNIST/raw", "MNIST/raw"), ("MNIST/raw", "MNIST"), ("raw", ".")],
    ids=["torchvision-root", "raw-folder", "dataset-folder", "raw-subfolder"],
)
def test_torchvision_layouts(tmp_path, files, given):
    write_mnist(tmp_path / files)
    parts = load_image_set("mnist", str(tmp_path / given))
    assert_mnist_split(parts.train, "train")
    assert_mnist_split(parts.test, "t10k")


def test_fashion_mnist_in_its_torchvision_layout(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    parts = load_image_set("fashion-mnist", str(tmp_path))
    assert_mnist_split(parts.train, "train")
    assert parts.class_names == torchvision.datasets.FashionMNIST.classes


def test_the_decompressed_file_is_preferred(tmp_path):
    """torchvision's download leaves both forms; the .gz is not even opened then."""
    write_mnist(tmp_path, gz=False)
    for path in list(tmp_path.iterdir()):
        path.with_name(path.name + ".gz").write_bytes(b"\x1f\x8b damaged")
    assert_mnist_split(load_image_set("mnist", str(tmp_path)).train, "train")


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_one_pair_alone_comes_back_as_train_without_test(tmp_path, split):
    write_mnist(tmp_path, splits=(split,))
    parts = load_image_set("mnist", str(tmp_path))
    assert parts.test is None
    assert_mnist_split(parts.train, split)


def test_a_missing_folder(tmp_path):
    message = data_error("mnist", tmp_path / "nowhere")
    assert "--data-dir" in message and str(tmp_path / "nowhere") in message


def test_a_folder_without_the_files_names_them(tmp_path):
    (tmp_path / "notes.txt").write_text("not data")
    message = data_error("mnist", tmp_path)
    assert str(tmp_path) in message
    assert all(name in message for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


def test_half_a_pair_names_the_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "not t10k-labels-idx1-ubyte.gz" in data_error("mnist", tmp_path)


def truncate_gzip(path: Path):
    path.write_bytes(path.read_bytes()[:-40])


def truncate_idx(path: Path):
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))


def wrong_magic(path: Path):
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[3] = 0x08
    path.write_bytes(gzip.compress(bytes(data)))


def garbage(path: Path):
    path.write_bytes(b"ab")


@pytest.mark.parametrize("damage", [truncate_gzip, truncate_idx, wrong_magic, garbage])
def test_a_damaged_file_is_named(tmp_path, damage):
    write_mnist(tmp_path, splits=("t10k",))
    damage(tmp_path / "t10k-images-idx3-ubyte.gz")
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in data_error("mnist", tmp_path)


def test_label_and_image_counts_must_agree(tmp_path):
    write_mnist(tmp_path, splits=("t10k",))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5) % 10)
    message = data_error("mnist", tmp_path)
    assert "6 images" in message and "5 labels" in message


@pytest.mark.parametrize(
    "images, labels, complaint",
    [(np.zeros((4, 32, 32)), np.zeros(4), "1x32x32, not 1x28x28"), (np.zeros((4, 28, 28)), np.full(4, 10), "0..9")],
)
def test_images_and_labels_must_fit_the_set(tmp_path, images, labels, complaint):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    assert complaint in data_error("mnist", tmp_path)


# ---- CIFAR-10: python pickle batches ----


@pytest.mark.parametrize("given", ["cifar-10-batches-py", "."])
def test_cifar_batches(tmp_path, given):
    write_cifar(tmp_path / "cifar-10-batches-py")
    parts = load_image_set("cifar10", str(tmp_path / given))
    (images, labels), (test_images, test_labels) = parts.train, parts.test
    assert images.dtype == torch.uint8 and images.shape == (10, 3, 32, 32) and labels.dtype == torch.int64
    expected_images, expected_labels = expected_cifar([f"data_batch_{i}" for i in range(1, 6)])
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    # each row of the official data is the red plane, then green, then blue
    assert torch.equal(images[0, 1].flatten(), torch.from_numpy(cifar_arrays("data_batch_1")[0][0, 1024:2048]))
    assert test_images.shape == (3, 3, 32, 32) and torch.equal(test_labels, expected_cifar(["test_batch"])[1])
    assert parts.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("text_keys, old_numpy", [(True, True), (False, True), (True, False)])
def test_cifar_batches_as_python_2_and_older_numpy_wrote_them(tmp_path, text_keys, old_numpy):
    write_cifar(tmp_path, text_keys=text_keys, old_numpy=old_numpy)
    assert torch.equal(load_image_set("cifar10", str(tmp_path)).train[0], expected_cifar(list(CIFAR_BATCHES)[:5])[0])


def test_cifar_test_batch_alone(tmp_path):
    write_cifar(tmp_path, names=["test_batch"])
    parts = load_image_set("cifar10", str(tmp_path))
    assert parts.test is None and torch.equal(parts.train[0], expected_cifar(["test_batch"])[0])


def test_cifar_missing_batches_are_named(tmp_path):
    write_cifar(tmp_path, names=["data_batch_1", "data_batch_2", "test_batch"])
    assert "not data_batch_3, data_batch_4, data_batch_5" in data_error("cifar10", tmp_path)


class Trap:
    """Unpickling this would create ``path``: what a hostile pickle could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize(
    "content", ["truncated", "not a dict", "no labels", "hostile"],
)
def test_cifar_bad_batches_are_named_and_nothing_runs(tmp_path, content):
    write_cifar(tmp_path)
    batch = tmp_path / "data_batch_2"
    data, labels = cifar_arrays("data_batch_2")
    batch.write_bytes({
        "truncated": batch.read_bytes()[:100],
        "not a dict": pickle.dumps([data, labels]),
        "no labels": pickle.dumps({b"data": data}),
        "hostile": pickle.dumps({b"data": data, b"labels": Trap(tmp_path / "trapped")}),
    }[content])
    assert str(batch) in data_error("cifar10", tmp_path)
    assert not (tmp_path / "trapped").exists()


# ---- the cache and the download ----


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHDECK_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir("mnist") == tmp_path / ".cache" / "torchdeck" / "mnist"
    monkeypatch.setenv("TORCHDECK_DATA", str(tmp_path / "data"))
    assert default_data_dir("cifar10") == tmp_path / "data" / "cifar10"


def test_specs_agree_with_torchvision():
    """The folders a download fills and the names written out here are torchvision's own."""
    for name in ("mnist", "fashion-mnist"):
        spec = IMAGE_SETS[name]
        dataset = getattr(torchvision.datasets, spec.dataset)
        assert spec.folder == dataset.__name__  # its raw_folder is ROOT/<class name>/raw
        assert [file for file, _ in dataset.resources] == list(spec.train_files + spec.test_files)
    cifar = IMAGE_SETS["cifar10"]
    assert cifar.folder == torchvision.datasets.CIFAR10.base_folder
    assert [file for file, _ in torchvision.datasets.CIFAR10.train_list] == list(cifar.train_files)
    assert IMAGE_SETS["fashion-mnist"].class_names == tuple(torchvision.datasets.FashionMNIST.classes)


def fake_download(fail: bool):
    """A torchvision data set class whose download writes the files (and fails, if told to)."""

    class Download:
        calls = 0

        def __init__(self, root: str, train: bool, download: bool):
            assert train and download
            Download.calls += 1
            write_mnist(Path(root) / "MNIST" / "raw", splits=("train",) if fail else ("train", "t10k"))
            if fail:
                raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz:\nTried ..., got:\n<urlopen error>")

    return Download


def test_offline_names_the_files_and_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHDECK_DATA", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_download(fail=True))
    with pytest.raises(DataError) as caught:
        load_image_set("mnist", None)
    message = str(caught.value)
    assert message.startswith("mnist: ") and "\n" not in message
    assert "could not be downloaded" in message and "--data-dir" in message and str(tmp_path / "mnist") in message
    assert all(name in message for name in IMAGE_SETS["mnist"].train_files + IMAGE_SETS["mnist"].test_files)
    assert list(tmp_path.iterdir()) == []


def test_a_download_fills_the_cache_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHDECK_DATA", str(tmp_path))
    download = fake_download(fail=False)
    monkeypatch.setattr(torchvision.datasets, "MNIST", download)
    parts = load_image_set("mnist", None)
    assert_mnist_split(parts.train, "train")
    assert_mnist_split(parts.test, "t10k")
    assert [path.name for path in tmp_path.iterdir()] == ["mnist"]
    assert (tmp_path / "mnist" / "MNIST" / "raw").is_dir()  # where torchvision keeps it, moved in whole
    assert_mnist_split(load_image_set("mnist", None).test, "t10k")
    assert download.calls == 1  # the second load read the cache


# ---- the real MNIST test set, where this machine has it ----


@pytest.mark.skipif(not MNIST_T10K.exists(), reason="the real MNIST t10k files are not on this machine")
def test_the_real_mnist_t10k_pair():
    parts = load_image_set("mnist", str(MNIST_T10K))
    images, labels = parts.train
    assert parts.test is None and images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 30 < images.float().mean() < 36  # MNIST's mean pixel is about 33
