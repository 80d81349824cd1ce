"""The csv task: a user's own table with number and text columns and missing values, trained
through the real engine, predicted through the CLI, and every bad table explained in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import calm, drive, error, train

from engine.config import RunConfig, catalog, command_line
from engine.data.tasks import load_task
from engine.errors import ConfigError
from engine.events import Message, RunFinished
from tui.app import TorchdeckApp

HEADER = ["a", "color", "b", "label", "amount", "stars"]
FEATURES_FOR_LABEL = ["a", "color", "b", "amount", "stars"]
SHIFT = {"red": 2.0, "green": 0.0, "blue": -2.0}


def write_table(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """A table whose class ``label`` follows ``a`` and the text column ``color``; ``amount`` is a
    regression target and ``stars`` a whole number from 1 to 5. Gaps, in several spellings: ``a``
    in every 20th row, ``color`` in 16 rows, the target ``label`` in 8 (no row has two)."""
    rng = np.random.default_rng(seed)
    body = []
    for i in range(rows):
        a, b, color = rng.normal(), rng.normal(), ["red", "green", "blue"][rng.integers(3)]
        score = a + SHIFT[color]
        label = "high" if score > 0.5 else "low" if score < -0.5 else "mid"
        amount = 3 * a - b + SHIFT[color] + 0.1 * rng.normal()
        stars = int(np.clip(round(b) + 3, 1, 5))
        body.append([f"{a:.3f}", color, f"{b:.3f}", label, f"{amount:.3f}", str(stars)])
        if i % 20 == 0:
            body[-1][0] = ""
        if i % 25 == 7:
            body[-1][1] = ["NA", "n/a", "None", " "][i % 4]
        if i % 50 == 13:
            body[-1][3] = "null"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *body])
    return path


def train_table(tmp_path: Path, **options):
    """(run, events) of the csv task on a fresh write_table, predicting ``label`` unless told."""
    table = write_table(tmp_path / "data.csv")
    return train(tmp_path / "checkpoints", "csv", data_dir=str(table), **{"target": "label", **options})


@pytest.fixture
def label_run(tmp_path) -> Path:
    run, _ = train_table(tmp_path, epochs=40, name="label")
    assert isinstance(run.result, RunFinished), run.result
    return run.run_dir


def test_a_table_with_text_and_missing_values_trains_to_high_accuracy(tmp_path):
    run, events = train_table(tmp_path, epochs=40)
    assert isinstance(run.result, RunFinished) and run.result.test["accuracy"] >= 0.9, run.result
    meta = run.data.meta
    assert (meta.kind, meta.class_names) == ("multiclass", ["high", "low", "mid"])
    assert meta.feature_names == FEATURES_FOR_LABEL
    assert meta.input_shape == [4 + 3]  # four number columns, three colours one-hot
    assert sum(run.data.sizes().values()) == 400 - 44
    assert events[0].name == "run_started"
    assert isinstance(events[1], Message) and events[1].level == "warning"
    assert events[1].text == ("dropped 44 of 400 rows of data.csv with a missing value; --missing impute fills "
                              "missing features instead")


def test_impute_fills_missing_features_from_the_training_split(tmp_path):
    data = load_task(RunConfig.for_task("csv", data_dir=str(write_table(tmp_path / "data.csv")), target="label",
                                        missing="impute"))
    assert sum(data.sizes().values()) == 400 - 8  # rows without a target still go
    assert data.notes == [
        "dropped 8 of 400 rows of data.csv with no value in the target 'label'",
        "filled 36 missing values with the training split's median (numbers) or most frequent value (text)",
    ]
    a, color = data.meta.columns[:2]
    assert a["type"] == "number" and abs(a["fill"]) < 0.3  # the median of a standard normal sample
    assert color["type"] == "text" and color["fill"] in color["categories"] == ["blue", "green", "red"]


def test_a_number_target_with_many_values_is_a_regression(tmp_path):
    run, _ = train_table(tmp_path, target="amount", epochs=60)
    assert run.data.meta.kind == "regression"
    assert run.data.meta.columns[3] == {"name": "label", "type": "text", "fill": None,
                                        "categories": ["high", "low", "mid"]}
    test = run.result.test
    assert set(test) == {"loss", "mae", "rmse", "r2"} and test["r2"] > 0.9, test


@pytest.mark.parametrize(
    "target, kind, expected",
    [
        ("stars", "auto", ("multiclass", ["1", "2", "3", "4", "5"])),  # whole numbers, few values
        ("stars", "regression", ("regression", [])),
        ("color", "auto", ("multiclass", ["blue", "green", "red"])),
        ("amount", "auto", ("regression", [])),
    ],
)
def test_the_target_decides_the_kind_unless_told(tmp_path, target, kind, expected):
    config = RunConfig.for_task("csv", data_dir=str(write_table(tmp_path / "data.csv")), target=target,
                                target_kind=kind)
    meta = load_task(config).meta
    assert (meta.kind, meta.class_names) == expected


def test_two_classes_make_a_binary_task_named_by_their_numbers(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    rows = "\n".join(f"{v:.3f},{1.0 if v > 0 else 0}" for v in x)  # "1.0" and "0": classes 0 and 1
    (tmp_path / "two.csv").write_text(f"x,y\n{rows}\n")
    meta = load_task(RunConfig.for_task("csv", data_dir=str(tmp_path / "two.csv"), target="y")).meta
    assert (meta.kind, meta.class_names) == ("binary", ["0", "1"])


def test_a_text_column_of_identifiers_is_pointed_out(tmp_path):
    (tmp_path / "ids.csv").write_text("name,y\n" + "".join(f"user{i},{i % 2}\n" for i in range(200)))
    data = load_task(RunConfig.for_task("csv", data_dir=str(tmp_path / "ids.csv"), target="y"))
    assert data.notes == [f"the text column 'name' has {data.sizes()['train']} different values, one input each: "
                          f"if it is an identifier, remove it from the file"]


def test_predict_takes_rows_by_position_or_by_header_name(cli, label_run, tmp_path):
    given = cli("predict", label_run, "--input", "1.5,red,0.2,6.3,3", "-i", "-1.5, blue, 0, -6.5, 3",
                "-i", "0.1,green,0,0.3,3", "--json")
    assert given.code == 0, given.err
    predictions = json.loads(given.out)
    assert [p["class"] for p in predictions] == ["high", "low", "mid"]
    assert predictions[1]["input"] == ["-1.5", "blue", "0", "-6.5", "3"]
    (tmp_path / "rows.csv").write_text("label,stars,amount,b,color,a\n?,3,6.3,0.2,red,1.5\n?,3,-6.5,0,blue,-1.5\n")
    by_name = json.loads(cli("predict", label_run, "--csv", "rows.csv", "--json").out)
    assert [p["class"] for p in by_name] == ["high", "low"]
    (tmp_path / "plain.csv").write_text("1.5,purple,0.2,1.5,3\n")  # no header; a colour never seen
    shown = cli("predict", label_run, "--csv", "plain.csv")
    assert shown.code == 0 and "1.5, purple, 0.2, 1.5, 3" in shown.out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-i", "1.5,red,0.2"], "each input needs 5 values (a, color, b, amount, stars), got 3"),
        (["-i", "1.5,red,abc,1,3"], "row 1: 'b' needs a number, not 'abc'"),
        (["-i", "NA,red,0,1,3"], "row 1: 'a' has no value, and the model was trained on complete rows only"),
        (["--csv", "partial.csv"], "the header does not name the column(s) 'stars'"),
    ],
)
def test_predict_bad_rows(cli, label_run, tmp_path, args, message):
    (tmp_path / "partial.csv").write_text("a,color,b,amount\n1,red,0,3\n")
    result = cli("predict", label_run, *args)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("torchdeck: error: ")
    assert message in lines[0]


def test_a_run_trained_with_impute_fills_gaps_at_predict_time(cli, tmp_path):
    run, _ = train_table(tmp_path, epochs=2, missing="impute")
    assert cli("predict", run.run_dir, "-i", "NA,,0.2,6.3,3", "--json").code == 0


def test_checkpoint_is_plain_data_and_evaluates(cli, label_run):
    state = torch.load(label_run / "best.pt", weights_only=True)
    assert state["task"]["columns"][1] == {"name": "color", "type": "text", "fill": None,
                                           "categories": ["blue", "green", "red"]}
    result = json.loads(cli("evaluate", label_run, "--json").out)
    assert result["classes"] == ["high", "low", "mid"] and result["samples"] == 72


TABLES = {
    "data.csv": None,  # written by write_table
    "empty.csv": "",
    "header.csv": "a,b\n",
    "numbers.csv": "1,2\n3,4\n",
    "ragged.csv": "a,b\n1,2\n3\n",
    "twice.csv": "a,a\n1,2\n",
    "gappy.csv": "a,b\n1,\n,2\nNA,3\n",
    "one-class.csv": "a,b\n" + "".join(f"{i},yes\n" for i in range(20)),
    "rare.csv": "a,b\n" + "".join(f"{i},{'no' if i < 2 else 'yes'}\n" for i in range(40)),
}
BAD_TRAINING = [
    (["--data-dir", "data.csv"], "data.csv has: a, color, b, label, amount, stars"),
    (["--data-dir", "data.csv", "--target", "labl"], "no column 'labl' (did you mean 'label'?)"),
    (["--target", "label"], "data_dir: the csv task reads your table: give --data-dir FILE.csv"),
    (["--data-dir", "nowhere.csv", "--target", "a"], "nowhere.csv: no such file"),
    (["--data-dir", "empty.csv", "--target", "a"], "empty.csv holds no rows"),
    (["--data-dir", "header.csv", "--target", "a"], "header.csv has a header but no rows"),
    (["--data-dir", "numbers.csv", "--target", "1"], "numbers.csv has no header row"),
    (["--data-dir", "ragged.csv", "--target", "a"], "ragged.csv line 3 has 1 values, expected 2"),
    (["--data-dir", "twice.csv", "--target", "a"], "the header names the column 'a' twice"),
    (["--data-dir", "gappy.csv", "--target", "b"], "every row has a missing value, so no row is left"),
    (["--data-dir", "one-class.csv", "--target", "b"], "holds only the value 'yes'; a classifier needs at least 2"),
    (["--data-dir", "rare.csv", "--target", "b"], "the class 'no' of 'b' has 2 rows; every class needs at least 3"),
    (["--data-dir", "data.csv", "--target", "color", "--target-kind", "regression"], "cannot be a regression target"),
    (["--data-dir", "data.csv", "--target", "label", "--loss", "mse"], "loss: 'mse' does not fit the multiclass task"),
    (["--data-dir", "data.csv", "--target", "amount", "--monitor", "accuracy"], "monitor: 'accuracy' is not measured"),
    (["--data-dir", "data.csv", "--target", "label", "--missing", "guess"], "missing: 'guess' is not allowed"),
]


@pytest.mark.parametrize("args, message", BAD_TRAINING, ids=[" ".join(a) for a, _ in BAD_TRAINING])
def test_bad_tables_are_one_clear_line_and_exit_2(cli, tmp_path, args, message):
    for name, text in TABLES.items():
        write_table(tmp_path / name) if text is None else (tmp_path / name).write_text(text)
    result = cli("train", "--task", "csv", *args)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    assert message in lines[0]
    assert not (tmp_path / "checkpoints").exists()  # refused before any run directory


def test_the_kind_is_checked_before_the_data_where_target_kind_tells_it():
    with pytest.raises(ConfigError, match="loss: 'cross-entropy' does not fit the regression task 'csv'"):
        RunConfig.for_task("csv", target_kind="regression", loss="cross-entropy")
    with pytest.raises(ConfigError, match="monitor: 'r2' is not measured for the binary or multiclass task 'csv'"):
        RunConfig.for_task("csv", target_kind="classification", monitor="r2")
    assert RunConfig.for_task("csv", loss="huber", monitor="r2").loss == "huber"  # auto: the data decides


def test_the_command_line_repeats_a_csv_run(tmp_path):
    config = RunConfig.for_task("csv", data_dir="my data.csv", target="price", missing="impute")
    assert command_line(config) == "torchdeck train --task csv --data-dir 'my data.csv' --target price --missing impute"


def test_the_wizard_asks_for_the_file_and_the_target(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(TorchdeckApp, "start_run", lambda app, config: started.append(config))
    table = write_table(tmp_path / "data.csv")

    async def scenario(pilot, screen):
        screen.query_one("#tasks").highlighted = list(catalog("task")).index("csv")
        await calm(pilot, screen)
        assert all(screen.query_one(f"#{option}-row").display for option in ("data_dir", "target", "missing"))
        assert error(screen, "data_dir").startswith("data_dir: the csv task reads your table")
        screen.query_one("#data_dir").value = str(table)
        await calm(pilot, screen)
        assert error(screen, "target").startswith("target: the csv task needs target")
        screen.query_one("#target").value = "label"
        await calm(pilot, screen)
        assert error(screen, "target") == ""
        assert "356 samples of 7 features → 3 classes" in str(screen.query_one("#task-info").render())
        await pilot.press("enter", "enter", "enter", "enter")

    drive(tmp_path, scenario)
    assert started == [RunConfig.for_task("csv", out=str(tmp_path), data_dir=str(table), target="label")]
