"""diff: two model files compared tensor by tensor, whatever wrote them."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import TorchdeckError
from engine.use.diff import diff


def weights() -> dict[str, torch.Tensor]:
    """A tiny model's state dict, the same on every call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def saved(path, tensors):
    torch.save(tensors, path)
    return path


def test_a_file_equals_its_copy(tmp_path):
    result = diff(saved(tmp_path / "a.pt", weights()), saved(tmp_path / "b.pt", weights()))
    assert result["equal"] and result["equal_tensors"] == 4 and result["different_tensors"] == 0
    assert result["only_a"] == result["only_b"] == result["changed"] == []
    assert all(c["max_abs_diff"] == 0 and c["rel_rms"] == 0 for c in result["common"])
    assert result["a"] == {"path": str(tmp_path / "a.pt"), "format": "state-dict"}


def test_changed_values_added_keys_and_shapes_are_told_apart(tmp_path):
    a = weights()
    b = weights()
    b["0.weight"] = a["0.weight"] * 1.1  # rel_rms = ‖0.1 a‖ / ‖a‖ = 0.1
    b["0.weight"][1, 2] = a["0.weight"][1, 2] + 0.75
    b["2.bias"] = torch.zeros(3)
    b["extra"] = torch.ones(2)
    result = diff(saved(tmp_path / "a.pt", a), saved(tmp_path / "b.pt", b))
    assert not result["equal"]
    assert result["only_a"] == [] and result["only_b"] == ["extra"]
    assert result["changed"] == [{"name": "2.bias", "a_shape": [2], "a_dtype": "float32",
                                  "b_shape": [3], "b_dtype": "float32"}]
    common = {c["name"]: c for c in result["common"]}
    assert set(common) == {"0.weight", "0.bias", "2.weight"}
    gap = (b["0.weight"].double() - a["0.weight"].double())
    assert common["0.weight"]["max_abs_diff"] == pytest.approx(0.75, abs=1e-5)
    assert common["0.weight"]["rel_rms"] == pytest.approx(float(gap.norm() / a["0.weight"].double().norm()))
    assert common["0.weight"]["rel_rms"] > 0.1
    assert common["0.bias"]["equal"] and common["2.weight"]["equal"] and not common["0.weight"]["equal"]
    assert (result["equal_tensors"], result["different_tensors"]) == (2, 2)


def test_a_uniform_scale_is_its_relative_change(tmp_path):
    a = weights()
    b = {name: tensor * 1.1 for name, tensor in a.items()}
    result = diff(saved(tmp_path / "a.pt", a), saved(tmp_path / "b.pt", b))
    assert all(c["rel_rms"] == pytest.approx(0.1, rel=1e-5) for c in result["common"])


def test_zero_and_nan_values(tmp_path):
    a = {"zero": torch.zeros(3), "both_zero": torch.zeros(2), "nan": torch.tensor([1.0, math.nan, 3.0]),
         "nan_one": torch.tensor([1.0, 2.0, 3.0]), "inf": torch.tensor([math.inf, 1.0])}
    b = {"zero": torch.tensor([0.0, 2.0, 0.0]), "both_zero": torch.zeros(2), "nan": torch.tensor([1.0, math.nan, 3.0]),
         "nan_one": torch.tensor([1.0, math.nan, 3.0]), "inf": torch.tensor([math.inf, 1.0])}
    result = diff(saved(tmp_path / "a.pt", a), saved(tmp_path / "b.pt", b))
    common = {c["name"]: c for c in result["common"]}
    assert common["zero"]["rel_rms"] == math.inf and common["zero"]["max_abs_diff"] == 2.0
    assert common["both_zero"]["equal"] and common["both_zero"]["rel_rms"] == 0.0
    assert common["nan"]["equal"] and common["inf"]["equal"]  # NaN where both have it; equal infinities
    one = common["nan_one"]
    assert (one["equal"], one["nan_mismatch"], one["max_abs_diff"]) == (False, 1, 0.0)
    assert not result["equal"] and result["equal_tensors"] == 3


def test_a_dtype_change_with_equal_values_is_not_equal(tmp_path):
    a = weights()
    b = {**a, "0.bias": a["0.bias"].double()}
    result = diff(saved(tmp_path / "a.pt", a), saved(tmp_path / "b.pt", b))
    assert [c["name"] for c in result["changed"]] == ["0.bias"]
    bias = next(c for c in result["common"] if c["name"] == "0.bias")
    assert bias["max_abs_diff"] == 0 and not bias["equal"] and not result["equal"]


def test_stripped_prefixes_match_a_wrapped_copy(tmp_path):
    a = saved(tmp_path / "a.pt", weights())
    wrapped = saved(tmp_path / "wrapped.pt", {f"module.{name}": t for name, t in weights().items()})
    assert diff(a, wrapped)["only_b"] == [f"module.{name}" for name in weights()]
    assert diff(a, wrapped, ["module."])["equal"]
    twice = saved(tmp_path / "twice.pt", {"module.model.0.bias": weights()["0.bias"]})
    assert diff(twice, saved(tmp_path / "bias.pt", {"0.bias": weights()["0.bias"]}), ["module.", "model."])["equal"]


def test_names_that_collide_once_stripped_are_one_line(tmp_path):
    w = weights()
    both = saved(tmp_path / "both.pt", {"module.0.bias": w["0.bias"], "0.bias": w["0.bias"]})
    with pytest.raises(TorchdeckError, match="'module.0.bias' and '0.bias' are both '0.bias'") as caught:
        diff(both, both, ["module."])
    assert "\n" not in str(caught.value)


def test_a_safetensors_copy_equals_the_torch_save_file(tmp_path):
    from safetensors.torch import save_file

    save_file(weights(), tmp_path / "model.safetensors")
    result = diff(saved(tmp_path / "a.pt", weights()), tmp_path / "model.safetensors")
    assert result["equal"] and result["b"]["format"] == "safetensors"


def test_a_run_directory_means_its_checkpoint(iris):
    result = diff(iris, iris / "last.pt")
    assert result["equal"] and result["a"]["path"] == str(iris / "last.pt")
    assert result["a"]["format"] == "torchdeck" and result["equal_tensors"] > 0


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(TorchdeckError, match="no such file"):
        diff(tmp_path / "nowhere.pt", saved(tmp_path / "a.pt", weights()))


def test_the_same_weights_in_every_format_are_equal(tmp_path):
    """A model's state dict, its TorchScript archive and its ONNX graph hold the same tensors."""
    import warnings

    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with warnings.catch_warnings():  # torch.jit and the TorchScript-based ONNX exporter are deprecated
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3)), tmp_path / "scripted.pt")
        torch.onnx.export(model, (torch.zeros(1, 3),), str(tmp_path / "model.onnx"), dynamo=False)
    for name in ("scripted.pt", "model.onnx"):
        result = diff(tmp_path / "weights.pt", tmp_path / name)
        assert result["equal"] and result["equal_tensors"] == 2, name
    model.weight.data[0, 0] += 0.5
    torch.save(model.state_dict(), tmp_path / "changed.pt")
    changed = diff(tmp_path / "scripted.pt", tmp_path / "changed.pt")
    assert not changed["equal"] and changed["different_tensors"] == 1
    assert changed["common"][0]["max_abs_diff"] == pytest.approx(0.5)
