"""torchdeck diff: exit 0 when equal, 1 when different, 2 on bad input; tables or JSON."""

from __future__ import annotations

import json

import torch


def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_equal_files_exit_0(cli, tmp_path):
    torch.save(weights(), tmp_path / "a.pt")
    torch.save(weights(), tmp_path / "b.pt")
    result = cli("diff", "a.pt", "b.pt")
    assert result.code == 0, result.err
    assert "4 tensors equal, 0 differ, 0 only in A, 0 only in B" in result.out


def test_different_files_exit_1_with_what_differs(cli, tmp_path):
    a, b = weights(), weights()
    b["0.weight"] = a["0.weight"] * 1.5
    b["2.weight"] = a["2.weight"] * 1.1
    b["2.bias"] = torch.zeros(5)
    del b["0.bias"]
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    result = cli("diff", "a.pt", "b.pt")
    assert result.code == 1, result.err
    assert "0 tensors equal, 3 differ, 1 only in A, 0 only in B" in result.out
    assert "only in A" in result.out and "2 float32" in result.out and "5 float32" in result.out
    table = result.out[result.out.index("values differ"):]
    assert table.index("0.weight") < table.index("2.weight")  # the larger relative change first
    assert "0.5000" in table and "0.1000" in table


def test_json_is_the_comparison(cli, tmp_path):
    a, b = weights(), weights()
    b["0.bias"] = a["0.bias"] + 0.25
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    result = cli("diff", "a.pt", "b.pt", "--json")
    assert result.code == 1
    found = json.loads(result.out)
    assert found["equal"] is False and found["equal_tensors"] == 3
    bias = next(c for c in found["common"] if c["name"] == "0.bias")
    assert abs(bias["max_abs_diff"] - 0.25) < 1e-6


def test_a_missing_file_is_one_line_and_exit_2(cli, tmp_path):
    torch.save(weights(), tmp_path / "a.pt")
    result = cli("diff", "a.pt", "nowhere.pt")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1 and "no such file" in result.err
    assert "Traceback" not in result.err


def test_strip_prefix_matches_a_data_parallel_copy(cli, tmp_path):
    torch.save(weights(), tmp_path / "a.pt")
    torch.save({f"module.{name}": t for name, t in weights().items()}, tmp_path / "wrapped.pt")
    assert cli("diff", "a.pt", "wrapped.pt").code == 1
    result = cli("diff", "a.pt", "wrapped.pt", "--strip-prefix", "module.")
    assert result.code == 0, result.out + result.err


def test_a_safetensors_copy_equals_the_pt_file(cli, tmp_path):
    from safetensors.torch import save_file

    torch.save(weights(), tmp_path / "a.pt")
    save_file(weights(), tmp_path / "a.safetensors")
    result = cli("diff", "a.pt", "a.safetensors")
    assert result.code == 0, result.out + result.err
    assert "(safetensors)" in result.out


def test_only_the_top_rows_unless_all(cli, tmp_path):
    torch.save({f"t{i}": torch.zeros(1) for i in range(25)}, tmp_path / "a.pt")
    torch.save({f"t{i}": torch.ones(1) for i in range(25)}, tmp_path / "b.pt")
    short = cli("diff", "a.pt", "b.pt")
    assert "first 20 of 25" in short.out and short.out.count(" inf ") == 20
    full = cli("diff", "a.pt", "b.pt", "--all")
    assert "first 20" not in full.out and full.out.count(" inf ") == 25


def test_names_are_shown_as_text(cli, tmp_path):
    torch.save({"[bold]x\x1b[2J": torch.zeros(1)}, tmp_path / "a.pt")
    torch.save({}, tmp_path / "b.pt")
    result = cli("diff", "a.pt", "b.pt")
    assert result.code == 1
    assert "[bold]x\\x1b[2J" in result.out and "\x1b" not in result.out
