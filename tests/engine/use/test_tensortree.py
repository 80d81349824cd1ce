"""The tensor tree and the statistics `inspect` and the TUI show, on real files."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.errors import CheckpointError
from engine.store.modelfiles import TensorEntry, open_file
from engine.use import tensorstats, tensortree


@pytest.fixture
def opened(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Sequential(nn.Linear(8, 3)))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    return open_file(tmp_path / "weights.pt")


def test_the_tree_groups_by_module_path_with_totals_per_subtree(opened):
    root = tensortree.build(opened.tensors.values())
    assert list(root.children) == ["0", "1", "2"]
    assert root.parameters == 4 * 8 + 8 + 8 * 4 + 1 + 8 * 3 + 3 and root.tensors == 9
    batch_norm = root.children["1"]
    assert list(batch_norm.children) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert batch_norm.bytes == 4 * 8 * 4 + 8  # four float32 vectors and one int64
    leaf = root.children["2"].children["0"].children["weight"]
    assert leaf.path == "2.0.weight" and leaf.tensor.shape == (3, 8) and leaf.parameters == 24
    assert [(level, node.path) for level, node in tensortree.rows(root)][:3] == [(0, "0"), (1, "0.weight"),
                                                                               (1, "0.bias")]


def test_depth_folds_deeper_nodes_into_their_totals(opened):
    root = tensortree.build(opened.tensors.values(), depth=1)
    assert all(not child.children for child in root.children.values())
    assert root.children["2"].parameters == 27 and root.children["2"].tensors == 2
    assert tensortree.build(opened.tensors.values(), depth=0).children == {}


@pytest.mark.parametrize("pattern, kept", [
    ("*.bias", {"0.bias", "1.bias", "2.0.bias"}),
    ("running", {"1.running_mean", "1.running_var"}),
    ("2.*", {"2.0.weight", "2.0.bias"}),
])
def test_the_filter_keeps_matching_tensors(opened, pattern, kept):
    root = tensortree.build(opened.tensors.values(), pattern=pattern)
    assert {node.path for _, node in tensortree.rows(root) if node.tensor} == kept
    assert root.tensors == len(kept)


def _entry(values: torch.Tensor) -> TensorEntry:
    return TensorEntry("t", tuple(values.shape), str(values.dtype).removeprefix("torch."), lambda: values)


def test_statistics_of_finite_values_with_nan_inf_and_zeros_counted():
    found = tensorstats.stats(_entry(torch.tensor([0.0, 1.0, 2.0, 0.0, math.nan, math.inf])))
    assert found["min"] == 0 and found["max"] == 2 and found["mean"] == pytest.approx(0.75)
    assert found["std"] == pytest.approx(math.sqrt(((0.75**2) * 2 + 0.25**2 + 1.25**2) / 4))
    assert found["nan"] == 1 and found["inf"] == 1 and found["zeros"] == pytest.approx(2 / 6)


def test_statistics_in_slices_agree_with_torch_over_the_whole(monkeypatch):
    torch.manual_seed(1)
    values = torch.randn(1000, 37)
    monkeypatch.setattr(tensorstats, "CHUNK", 999)  # many slices, none aligned with the rows
    found = tensorstats.stats(_entry(values))
    assert found["mean"] == pytest.approx(values.double().mean().item(), abs=1e-9)
    assert found["std"] == pytest.approx(values.double().std(unbiased=False).item(), rel=1e-9)
    assert found["min"] == values.min().item() and found["max"] == values.max().item()
    edges, counts = tensorstats.histogram(_entry(values), bins=10)
    assert len(edges) == 11 and sum(counts) == values.numel()
    assert edges[0] == values.min().item() and edges[-1] == pytest.approx(values.max().item())


def test_statistics_of_integers_booleans_and_all_nan():
    assert tensorstats.stats(_entry(torch.tensor([True, False, False])))["zeros"] == pytest.approx(2 / 3)
    assert tensorstats.stats(_entry(torch.arange(5)))["mean"] == 2
    nothing = tensorstats.stats(_entry(torch.tensor([math.nan, math.nan])))
    assert nothing["mean"] is None and nothing["nan"] == 2
    assert tensorstats.histogram(_entry(torch.tensor([math.nan]))) == ([], [])


def test_values_that_cannot_be_read_say_why():
    with pytest.raises(CheckpointError, match="cannot be read"):
        tensorstats.stats(TensorEntry("legacy.weight", (2,), "float32"))
