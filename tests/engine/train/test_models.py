"""The model catalog: shapes, parameter counts, image-shape checks and safe weight loading."""

from __future__ import annotations

import pickle
import re
from dataclasses import replace

import pytest
import torch
from conftest import Payload

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.data.tasks import load_task
from engine.errors import ConfigError
from engine.train.models import build_model, count_parameters


def meta(input_shape, classes: int = 10) -> TaskMeta:
    """Task metadata with the given input shape and number of classes (no data is loaded)."""
    kind = "binary" if classes == 1 else "multiclass"
    names = [] if classes == 1 else [str(c) for c in range(classes)]
    return TaskMeta("digits", kind, list(input_shape), [], names, torch.zeros(1), torch.ones(1))


def build(model: str, input_shape, classes: int = 10, **options):
    config = RunConfig.for_task("mnist", model=model, **options)  # an image task: any model fits
    return build_model(config, meta(input_shape, classes))


def conv(inputs: int, outputs: int, side: int = 3) -> int:
    return inputs * outputs * side * side + outputs


# --- the table models keep their layers ------------------------------------------------


def test_mlp_parameters_are_unchanged_for_a_loaded_task():
    config = RunConfig.for_task("iris")
    model = build_model(config, load_task(config).meta)
    assert count_parameters(model) == 243
    assert list(model.state_dict())[:2] == ["1.weight", "1.bias"]


def test_mlp_flattens_an_image_shape():
    model = build("mlp", (1, 28, 28), hidden=[500], dropout=0.0)
    assert count_parameters(model) == 28 * 28 * 500 + 500 + 500 * 10 + 10 == 397_510
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_loaded_meta_with_an_image_shape_builds_the_cnn():
    config = RunConfig.for_task("mnist", model="cnn", hidden=[128])
    image = replace(load_task(RunConfig.for_task("digits")).meta, input_shape=[1, 8, 8])
    assert build_model(config, image)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


# --- image models ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "convnet", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_image_models_give_one_row_of_logits_per_image(name, shape):
    model = build(name, shape).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_convnet_is_the_tutorial_network():
    model = build("convnet", (3, 180, 180), classes=1)
    convs = conv(3, 32) + conv(32, 64) + conv(64, 128) + conv(128, 256) + conv(256, 256)
    assert count_parameters(model) == convs + 256 * 11 * 11 + 1 == 1_009_473
    assert isinstance(model[-1], torch.nn.Linear) and model[-1].in_features == 256 * 11 * 11
    assert not any(isinstance(layer, torch.nn.Sigmoid) for layer in model)  # BCE-with-logits
    assert model(torch.zeros(2, 3, 180, 180)).shape == (2, 1)


def test_cnn_parameters():
    model = build("cnn", (1, 28, 28), hidden=[128], dropout=0.25, batch_norm=False)
    assert count_parameters(model) == conv(1, 32) + conv(32, 64) + 64 * 7 * 7 * 128 + 128 + 128 * 10 + 10
    assert any(isinstance(layer, torch.nn.Dropout) for layer in model)


def test_resnet18_has_the_cifar_stem_for_small_images():
    small = build("resnet18", (3, 32, 32))
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, torch.nn.Identity)
    assert count_parameters(small) == 11_173_962  # the usual CIFAR ResNet-18
    large = build("resnet18", (1, 64, 64))
    assert large.conv1.kernel_size == (7, 7) and large.conv1.in_channels == 1


@pytest.mark.parametrize("name", ["cnn", "convnet", "resnet18"])
@pytest.mark.parametrize("shape", [(64,), (1, 2, 2)])
def test_image_models_refuse_tables_and_tiny_images(name, shape):
    with pytest.raises(ConfigError, match=rf"model: {name} needs image inputs .* shape \[{shape[0]}"):
        build(name, shape)


# --- resnet18 weights --------------------------------------------------------------------


def test_resnet18_fine_tunes_from_weights_with_other_classes(tmp_path):
    source = build("resnet18", (3, 32, 32), classes=5)
    path = tmp_path / "resnet.pt"
    torch.save(source.state_dict(), path)
    tuned = build("resnet18", (3, 32, 32), classes=10, weights=str(path))
    for key, tensor in tuned.state_dict().items():
        if key.startswith("fc."):
            assert tensor.shape[0] == 10
        else:
            assert torch.equal(tensor, source.state_dict()[key]), key


def test_resnet18_fine_tunes_from_torchvision_imagenet_weights(tmp_path):
    import torchvision

    imagenet = torchvision.models.resnet18(weights=None)  # the layout of torchvision's weight files
    path = tmp_path / "resnet18-imagenet.pt"
    torch.save(imagenet.state_dict(), path)
    tuned = build("resnet18", (3, 64, 64), classes=2, weights=str(path))
    assert torch.equal(tuned.conv1.weight, imagenet.conv1.weight) and tuned.fc.out_features == 2
    with pytest.raises(ConfigError, match=r"conv1\.weight has shape \[64, 3, 7, 7\].* 3x3 for images under 64x64"):
        build("resnet18", (3, 32, 32), weights=str(path))


def test_resnet18_reads_weights_inside_a_checkpoint(tmp_path):
    source = build("resnet18", (3, 32, 32))
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    tuned = build("resnet18", (3, 32, 32), weights=str(path))
    assert torch.equal(tuned.fc.weight, source.fc.weight)


def test_resnet18_refuses_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "gray.pt"
    torch.save(build("resnet18", (1, 32, 32)).state_dict(), path)
    with pytest.raises(ConfigError, match=r"gray\.pt does not fit this model: conv1\.weight has shape"):
        build("resnet18", (3, 32, 32), weights=str(path))
    torch.save({"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, path)
    with pytest.raises(ConfigError, match=r"gray\.pt does not fit this model: it lacks conv1\.weight"):
        build("resnet18", (3, 32, 32), weights=str(path))
    torch.save({**build("resnet18", (3, 32, 32)).state_dict(), "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match=r"gray\.pt does not fit this model: the model has no extra\.weight"):
        build("resnet18", (3, 32, 32), weights=str(path))


def test_resnet18_refuses_a_malicious_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"fc.weight": Payload(tmp_path / "MARKER")}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match=r"evil\.pt was refused"):
        build("resnet18", (3, 32, 32), weights=str(tmp_path / "evil.pt"))
    assert not (tmp_path / "MARKER").exists()


def test_resnet18_needs_an_existing_weights_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^weights: .*missing\.pt: no such file"):
        build("resnet18", (3, 32, 32), weights=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("content", [b"", b"not a torch file", pickle.dumps([1, 2]), None])
def test_resnet18_explains_unusable_weights(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save({"epoch": 3}, path)  # loads, but holds no tensors
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"^weights: .*weights\.pt (is damaged|was refused|holds no state dict|is empty|is not a model file)"):
        build("resnet18", (3, 32, 32), weights=str(path))


@pytest.mark.parametrize("stored, key, problem", [
    (lambda w: w.to_sparse(), "conv1.weight", "is a sparse_coo tensor; a model's weights are dense"),
    (lambda w: w.flatten(1).to_sparse_csr(), "conv1.weight", "is a sparse_csr tensor"),
    (lambda w: w.to(torch.int64), "conv1.weight", "holds int64 values; the model's are floating point"),
    (lambda w: w > 0, "layer1.0.conv1.weight", "holds bool values"),
    (lambda w: w.to(torch.complex64), "fc.weight", "holds complex64 values"),
    (lambda w: torch.empty(w.shape, device="meta"), "conv1.weight", "holds no values (a tensor on the meta device)"),
], ids=["sparse-coo", "sparse-csr", "int64", "bool", "complex", "meta"])
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_resnet18_refuses_weights_stored_sparse_empty_or_not_as_floats(tmp_path, stored, key, problem):
    own = build("resnet18", (3, 32, 32)).state_dict()
    path = tmp_path / "odd.pt"
    torch.save({**own, key: stored(own[key])}, path)
    with pytest.raises(ConfigError, match=rf"^weights: .*odd\.pt: {re.escape(key)} {re.escape(problem)}"):
        build("resnet18", (3, 32, 32), weights=str(path))


def test_resnet18_takes_half_precision_weights_and_whole_number_counters(tmp_path):
    source = build("resnet18", (3, 32, 32))
    path = tmp_path / "half.pt"
    torch.save({key: t.half() if t.is_floating_point() else t for key, t in source.state_dict().items()}, path)
    tuned = build("resnet18", (3, 32, 32), weights=str(path))  # num_batches_tracked stays int64
    assert torch.allclose(tuned.conv1.weight, source.conv1.weight, atol=1e-2)
