"""``torchdeck lr-find``: the range test from the command line, on real tiny tasks."""

from __future__ import annotations

import json

import pytest


def test_json_gives_the_curve_the_suggestions_and_why(cli, tmp_path):
    result = cli("lr-find", "--task", "iris", "--device", "cpu", "--batches", "40", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert set(found) == {"lrs", "losses", "suggestion", "steepest", "valley", "rule", "stopped", "lr"}
    assert len(found["lrs"]) == len(found["losses"]) <= 40
    assert found["lrs"][0] == pytest.approx(1e-7)
    assert found["suggestion"] in (found["valley"], found["steepest"])
    assert found["rule"] and found["stopped"] and found["lr"] == pytest.approx(0.01)
    assert not list(tmp_path.iterdir())  # nothing saved: no run directory, no checkpoints folder


def test_the_options_are_trains_and_a_config_file_too(cli, tmp_path):
    (tmp_path / "run.toml").write_text('optimizer = "sgd"\nmomentum = 0.9\n')
    result = cli("lr-find", "-c", "run.toml", "-t", "iris", "--lr", "0.05", "--device", "cpu",
                 "--start", "1e-5", "--end", "1", "--batches", "30", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["lr"] == pytest.approx(0.05)
    assert found["lrs"][0] == pytest.approx(1e-5) and found["lrs"][-1] <= 1 + 1e-9


def test_plain_output_names_the_suggestion_and_the_rule(cli):
    result = cli("lr-find", "--task", "digits", "--device", "cpu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("suggested learning rate: ")
    assert any(line.strip().startswith("how: valley") for line in lines)
    assert any("steepest descent: " in line and "valley: " in line for line in lines)
    assert "┌" not in result.out  # no chart when the output is not a terminal
    assert lines[-1].strip().startswith("train with it: --lr ")


@pytest.mark.parametrize("args, words", [
    (["--bogus"], "No such option"),
    (["--batches", "1"], "batches"),
    (["--start", "1", "--end", "0.1"], "0 < start < end"),
    (["--lr", "-1"], "lr"),
    (["--task", "nope"], "nope"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, words):
    result = cli("lr-find", "--device", "cpu", *args)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("torchdeck: error: ") and words in result.err
    assert len(result.err.strip().splitlines()) == 1
