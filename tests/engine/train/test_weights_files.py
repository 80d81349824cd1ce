"""--weights from any model file (issue 15): a state dict at any depth of a checkpoint, a
safetensors file, keys under a wrapper's prefix (--strip-prefix), every misfit named at once."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.train.models import build_model

SHAPE = (3, 32, 32)


def build(classes=2, **options):
    config = RunConfig.for_task("mnist", model="mobilenet_v3_small", **options)
    return build_model(config, SimpleNamespace(input_shape=list(SHAPE), outputs=classes))


@pytest.fixture(scope="module")
def source():
    """The weights of a model for 5 classes: the body fits any task, the head is kept fresh."""
    return {key: tensor.clone() for key, tensor in build(classes=5).state_dict().items()}


def assert_loaded(model, state):
    for key, tensor in model.state_dict().items():
        if not key.startswith("classifier.3."):  # the head: of the task's classes, new
            assert torch.equal(tensor, state[key]), key


def test_a_state_dict_nested_in_a_training_checkpoint_is_found(tmp_path, source):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model_state": source, "optimizer": {"lr": 0.1}}, path)
    assert_loaded(build(weights=str(path)), source)


def test_a_safetensors_weights_file_is_taken(tmp_path, source):
    path = tmp_path / "model.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in source.items()}, path)
    assert_loaded(build(weights=str(path)), source)


def test_keys_under_a_wrappers_prefix_are_refused_with_the_prefix_to_strip_then_taken(tmp_path, source):
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{key}": tensor for key, tensor in source.items()}, path)
    with pytest.raises(ConfigError) as error:
        build(weights=str(path))
    message = str(error.value)
    assert re.fullmatch(rf"weights: {re.escape(str(path))} does not fit this model: it lacks features\.0\.0\.weight, "
                        rf"[^;]*, … \(\d+ keys\); the model has no module\.features\.0\.0\.weight, [^;]*, … "
                        rf"\({len(source)} keys\); try --strip-prefix module\.", message)
    assert error.value.option == "weights"
    assert_loaded(build(weights=str(path), strip_prefix="module."), source)


def test_every_misfit_is_named_at_once(tmp_path, source):
    state = {key: tensor for key, tensor in source.items() if key not in ("features.0.0.weight", "features.0.1.bias")}
    state |= {"extra.weight": torch.zeros(1), "more.bias": torch.zeros(1)}
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=re.escape(
            "does not fit this model: it lacks features.0.0.weight, features.0.1.bias (2 keys); "
            "the model has no extra.weight, more.bias (2 keys)") + "$"):
        build(weights=str(path))


def test_strip_prefix_is_an_option_of_the_models_that_take_weights():
    assert RunConfig.for_task("mnist", model="resnet18", strip_prefix="model.").strip_prefix == "model."
    assert RunConfig.for_task("iris", strip_prefix="model.").ignored(["strip_prefix"]) == [
        "strip_prefix has no effect with model mlp"]
