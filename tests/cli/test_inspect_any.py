"""`torchdeck inspect` on files torchdeck did not write: what a person reads, and --json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    state = model.state_dict()
    state["2.bias"] = torch.tensor([0.0, 1.0, math.nan])
    torch.save({"epoch": 5, "model_state_dict": state, "note": "seed run"}, tmp_path / "checkpoint.pth")
    return tmp_path / "checkpoint.pth"


def test_a_checkpoint_of_another_tool_shows_its_tree_and_values(cli, weights):
    result = cli("inspect", weights)
    assert result.code == 0 and not result.err
    words = " ".join(result.out.split())
    for expected in ("a training checkpoint", "epoch 5", "seed run", "tensors at model_state_dict", "0 2 tensors",
                     "weight 8×4 float32 32", "total 4 tensors 67"):
        assert expected in words


def test_json_depth_filter_and_stats(cli, weights):
    info = json.loads(cli("inspect", weights, "--json", "--depth", "1").out)
    assert info["format"] == "checkpoint" and info["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    assert [(c["name"], c["parameters"], "children" in c) for c in info["tree"]["children"]] == \
        [("0", 40, False), ("2", 27, False)]
    info = json.loads(cli("inspect", weights, "--json", "--filter", "*.bias", "--stats").out)
    assert sorted(info["stats"]) == ["0.bias", "2.bias"]
    bias = info["stats"]["2.bias"]
    assert (bias["min"], bias["max"], bias["nan"], bias["zeros"]) == (0.0, 1.0, 1, pytest.approx(1 / 3))
    text = " ".join(cli("inspect", weights, "--stats", "--filter", "2.bias").out.split())
    assert "statistics" in text and "2.bias 0 1 0.5 0.5 1 0 33.3%" in text


def test_a_hostile_tensor_name_is_shown_as_text(cli, tmp_path):
    torch.save({"[red]x[/red]\x1b[2J.weight": torch.ones(2)}, tmp_path / "hostile.pt")
    result = cli("inspect", tmp_path / "hostile.pt")
    assert result.code == 0 and "[red]x[/red]\\x1b[2J" in result.out and "\x1b[2J" not in result.out


def test_a_whole_model_is_described_and_not_loaded(cli, tmp_path):
    torch.save(nn.Sequential(nn.Linear(2, 2)), tmp_path / "whole_model.pth")
    result = cli("inspect", tmp_path / "whole_model.pth")
    words = " ".join(result.out.split())
    assert result.code == 0
    assert "not loaded" in words and "torch.nn.modules.container.Sequential" in words
    assert "0 Linear 6" in words  # the layer's class, from the pickle read as data


def test_a_file_that_is_no_model_is_one_line_and_exit_2(cli, tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    result = cli("inspect", tmp_path / "notes.pt")
    assert result.code == 2 and result.err.count("\n") == 1 and "is not a model file" in result.err


def test_a_torchdeck_run_shows_its_layers_with_their_types(cli, tmp_path):
    assert cli("train", "--epochs", "1", "--name", "iris").code == 0
    info = json.loads(cli("inspect", tmp_path / "checkpoints" / "iris", "--json", "--stats").out)
    assert info["format"] == "torchdeck" and info["status"] == "finished"
    assert info["modules"]["1"] == "torch.nn.modules.linear.Linear"
    assert info["tree"]["parameters"] == info["parameters"] == 243
    assert set(info["stats"]) == {t["name"] for t in info["tensors"]}
