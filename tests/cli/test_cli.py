"""The torchdeck command: output modes, exit codes, and the commands that read runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_piped_training_prints_one_plain_line_per_epoch(cli):
    result = cli("train", "--task", "iris", "--epochs", "5", "--name", "plain")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 1 + 5 + 1
    assert lines[0].startswith("start checkpoints/plain · task iris · model mlp (243 parameters)")
    assert [line.split()[1] for line in lines[1:6]] == [f"{n}/5" for n in range(1, 6)]
    assert "train_loss" in lines[1] and "val_loss" in lines[1] and "accuracy" in lines[1]
    assert lines[-1].startswith("end finished after 5 epochs") and "test loss" in lines[-1]
    assert "\r" not in result.out and "\x1b" not in result.out


def test_json_prints_every_event_as_it_is_recorded(cli, tmp_path):
    result = cli("train", "--task", "linear", "--epochs", "3", "--json", "--name", "j")
    assert result.code == 0
    events = [json.loads(line) for line in result.out.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert {"device", "parameters", "sizes", "run_dir"} <= set(events[0])
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"epoch", "train_loss", "val_loss", "metrics", "lr", "seconds", "samples"} <= set(epoch)
    assert {"run_dir", "best", "test"} <= set(events[-1])
    recorded = (tmp_path / "checkpoints" / "j" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in recorded] == events


def test_config_file_with_flags_on_top(cli, tmp_path):
    (tmp_path / "run.toml").write_text('task = "wine"\nepochs = 4\nlr = 0.005\nname = "from-file"\n')
    result = cli("train", "--config", "run.toml", "--epochs", "2", "--json")
    assert result.code == 0, result.err
    config = json.loads(result.out.splitlines()[0])["config"]
    assert (config["task"], config["epochs"], config["lr"], config["name"]) == ("wine", 2, 0.005, "from-file")


def test_resume_from_the_command_line(cli, tmp_path):
    assert cli("train", "--epochs", "2", "--name", "r").code == 0
    result = cli("train", "--resume", "checkpoints/r", "--epochs", "3")
    assert result.code == 0, result.err
    assert "resuming after epoch 2" in result.out
    assert "epoch 3/3" in result.out and "epoch 2/" not in result.out
    assert torch.load(tmp_path / "checkpoints/r/last.pt", weights_only=True)["epoch"] == 3


BAD_INPUT = [
    (["train", "--task", "irs"], "did you mean 'iris'?"),
    (["train", "--model", "cnnn"], "is not a known model"),
    (["train", "--optimizer", "adm"], "did you mean 'adam'?"),
    (["train", "--lr", "-0.1"], "lr: -0.1 is not allowed"),
    (["train", "--lr", "abc"], "--lr"),
    (["train", "--epochs", "0"], "epochs: 0 is not allowed"),
    (["train", "--hidden", "16,a"], "hidden: '16,a'"),
    (["train", "--device", "tpu"], "device: 'tpu'"),
    (["train", "--lossy"], "No such option"),
    (["train", "--config", "missing.toml"], "does not exist"),
    (["train", "--config", "bad.toml"], "not valid TOML"),
    (["train", "--config", "unknown.toml"], "unknown option 'epoch' (did you mean 'epochs'?)"),
    (["train", "--resume", "not-a-run"], "not a torchdeck run directory"),
    (["train", "--resume", "empty.pt"], "is empty"),
    (["train", "--resume", "text.pt"], "damaged or not a PyTorch file"),
    (["train", "--resume", "nowhere"], "no such file"),
    (["inspect", "nowhere"], "no such file"),
    (["evaluate", "not-a-run"], "not a torchdeck run directory"),
    (["evaluate", "text.pt", "--split", "dev"], "--split"),
    (["predict", "empty.pt", "--input", "1,2"], "is empty"),
    (["list", "animals"], "animals"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_exit_2(cli, tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("task = \n")
    (tmp_path / "unknown.toml").write_text("epoch = 3\n")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello\n")
    result = cli(*args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    assert message in lines[0]
    assert "Traceback" not in result.err + result.out


@pytest.fixture
def iris_run(cli, tmp_path) -> Path:
    assert cli("train", "--epochs", "30", "--name", "iris").code == 0
    return tmp_path / "checkpoints" / "iris"


@pytest.mark.filterwarnings("error")  # torch's "copying to a meta parameter" would reach the terminal
def test_inspect(cli, iris_run):
    text = cli("inspect", iris_run)
    assert text.code == 0
    words = " ".join(text.out.split())  # however long the folder's path makes the lines wrap
    for expected in ("status finished", "epoch 30/30", "243 parameters", "best accuracy", "test loss",
                     "history", "tensors at model", "Linear", "last.pt", "torch"):
        assert expected in words
    info = json.loads(cli("inspect", iris_run, "--json").out)
    assert info["status"] == "finished" and info["epoch"] == 30 and info["parameters"] == 243
    assert len(info["history"]) == 30 and info["classes"] == ["setosa", "versicolor", "virginica"]
    assert sum(layer["parameters"] for layer in info["layers"]) == 243
    assert info["versions"]["torch"] == torch.__version__


def test_evaluate_shows_confusion_matrix_and_report(cli, iris_run):
    result = json.loads(cli("evaluate", iris_run, "--json").out)
    assert result["split"] == "test" and result["samples"] == 30
    matrix = result["confusion_matrix"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) == 30
    assert sum(matrix[i][i] for i in range(3)) / 30 == pytest.approx(result["metrics"]["accuracy"])
    assert set(result["report"]) >= {"setosa", "versicolor", "virginica", "macro avg"}
    text = cli("evaluate", iris_run, "--split", "val").out
    assert "confusion matrix" in text and "versicolor" in text and "(15 samples)" in text


def test_predict_typed_rows_and_csv(cli, iris_run, tmp_path):
    result = json.loads(cli("predict", iris_run, "-i", "5.1,3.5,1.4,0.2", "-i", "6.9,3.1,5.4,2.1", "--json").out)
    assert [p["class"] for p in result] == ["setosa", "virginica"]
    assert sum(t["probability"] for t in result[0]["top"]) == pytest.approx(1.0)
    (tmp_path / "rows.csv").write_text(
        "species,petal width (cm),petal length (cm),sepal width (cm),sepal length (cm)\n"
        "?,0.2,1.4,3.5,5.1\n"
    )
    by_name = json.loads(cli("predict", iris_run, "--csv", "rows.csv", "--json", "-k", "1").out)
    assert by_name[0]["class"] == "setosa" and len(by_name[0]["top"]) == 1
    (tmp_path / "plain.csv").write_text("6.9,3.1,5.4,2.1\n")
    assert "virginica" in cli("predict", iris_run, "--csv", "plain.csv").out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-i", "5.1,3.5,1.4"], "each input needs 4 values"),
        (["-i", "5.1,x,1.4,0.2"], "'x' is not a number"),
        (["--csv", "missing.csv"], "cannot read"),
        ([], "--input"),
    ],
)
def test_predict_bad_input(cli, iris_run, args, message):
    result = cli("predict", iris_run, *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_regression_predict_and_binary_evaluate(cli):
    assert cli("train", "--task", "linear", "--epochs", "30", "--name", "line").code == 0
    values = json.loads(cli("predict", "checkpoints/line", "-i", "1", "-i", "2", "--json").out)
    assert [round(v["value"]) for v in values] == [3, 5]
    assert cli("train", "--task", "breast-cancer", "--epochs", "5", "--name", "bc").code == 0
    result = json.loads(cli("evaluate", "checkpoints/bc", "--json").out)
    assert result["classes"] == ["malignant", "benign"] and result["samples"] == 114


def test_list_shows_every_catalog(cli):
    result = cli("list")
    for name in ("iris", "breast-cancer", "linear", "wine", "digits", "diabetes", "mlp", "adamw", "rmsprop",
                 "plateau", "cosine", "bce-with-logits", "gelu"):
        assert name in result.out
    assert "diabetes" not in cli("list", "models").out


# --- signals, in a real process ---------------------------------------------------------


def start_training(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--task", "digits", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_epochs(process: subprocess.Popen, count: int) -> list[str]:
    lines = []
    while sum(line.startswith("epoch ") for line in lines) < count:
        line = process.stdout.readline()
        assert line, "the run ended early"
        lines.append(line)
    return lines


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_saves_and_prints_the_resume_command(cli, tmp_path, signum, code):
    process = start_training(tmp_path, "--epochs", "2000", "--name", "long")
    wait_for_epochs(process, 2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "resume with: torchdeck train --resume checkpoints/long" in out.splitlines()[-1]
    state = torch.load(tmp_path / "checkpoints/long/last.pt", weights_only=True)
    assert state["epoch"] >= 2
    events = (tmp_path / "checkpoints/long/events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["event"] == "run_stopped"
    # The signal is the real process's part; resuming is checked in this process (no second start-up).
    resumed = cli("train", "--resume", "checkpoints/long", "--epochs", str(state["epoch"] + 1))
    assert resumed.code == 0, resumed.err
    assert f"epoch {state['epoch'] + 1}/{state['epoch'] + 1}" in resumed.out


def test_a_diverging_run_fails_with_exit_1(cli):
    result = cli("train", "--task", "linear", "--optimizer", "sgd", "--lr", "1e10", "--name", "boom")
    assert result.code == 1
    assert result.out.splitlines()[-1].startswith("end failed: the loss became")
    assert "try a lower --lr" in result.out


def test_options_the_choice_ignores_are_warned_about(cli):
    result = cli("train", "--epochs", "1", "--momentum", "0.9", "--scheduler", "none", "--gamma", "0.5")
    assert result.code == 0
    assert "torchdeck: warning: momentum has no effect with optimizer adam" in result.err
    assert "torchdeck: warning: gamma has no effect with scheduler none" in result.err


@pytest.mark.parametrize(
    "content, message",
    [
        ("petal width (cm),petal length (cm),sepal width (cm),sepal length(cm)\n0.2,1.4,3.5,5.1\n",
         "the header does not name the column(s) 'sepal length (cm)'"),
        ("5.1,3.5,1.4,O.2\n6.7,3.0,5.2,2.3\n", "the header does not name"),
        ("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3,9.9\n", "line 2 has 5 values, expected 4"),
        ("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,x\n", "line 2: 'x' is not a number"),
        ("", "holds no rows"),
    ],
)
def test_predict_csv_never_guesses(cli, iris_run, tmp_path, content, message):
    (tmp_path / "rows.csv").write_text(content)
    result = cli("predict", iris_run, "--csv", "rows.csv")
    assert result.code == 2 and message in result.err


def test_predict_csv_with_a_byte_order_mark(cli, iris_run, tmp_path):
    header = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)"
    (tmp_path / "excel.csv").write_bytes(f"\ufeff{header}\r\n5.1,3.5,1.4,0.2\r\n".encode("utf-8"))
    result = json.loads(cli("predict", iris_run, "--csv", "excel.csv", "--json").out)
    assert result[0]["class"] == "setosa" and result[0]["input"] == [5.1, 3.5, 1.4, 0.2]


def test_inspect_a_run_that_failed_before_its_first_checkpoint(cli):
    assert cli("train", "--task", "linear", "--optimizer", "sgd", "--lr", "1e10", "--name", "boom").code == 1
    result = cli("inspect", "checkpoints/boom")
    assert result.code == 2
    assert "holds no checkpoint yet: the run failed before its first epoch ended (the loss became" in result.err


def test_version_and_short_help(cli):
    from engine import __version__

    assert cli("--version").out.strip() == f"torchdeck {__version__}"
    assert "Usage: torchdeck train" in cli("train", "-h").out


def train_command():
    import typer

    from cli.main import app

    return typer.main.get_command(app).commands["train"]


def test_train_has_a_flag_with_help_for_every_run_option():
    from dataclasses import fields

    from engine.config import RunConfig, is_asked

    flags = {param.name: param for param in train_command().params}
    assert "code" not in flags  # a record the run keeps (its code's hash), never a flag
    for field in filter(is_asked, fields(RunConfig)):
        param = flags[field.name]
        assert param.opts[0] == "--" + field.name.replace("_", "-") and param.help == field.metadata["help"]
    assert flags["batch_norm"].secondary_opts == ["--no-batch-norm"]
    assert {"--config", "--resume", "--json", "--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint"} <= {
        opt for param in flags.values() for opt in param.opts}


def test_short_flags_switches_and_layer_lists_are_read():
    args = ["-t", "wine", "-m", "mlp", "-o", "sgd", "-b", "8", "-e", "3", "--hidden", "8,4", "--no-batch-norm"]
    params = train_command().make_context("train", args).params
    given = {name: value for name, value in params.items() if value not in (None, ())}
    assert given == dict(task="wine", model="mlp", optimizer="sgd", batch_size=8, epochs=3, hidden="8,4",
                         batch_norm=False, json_lines=False, nnodes=1, node_rank=0)


def test_a_running_run_cannot_be_resumed_twice(tmp_path):
    from engine.errors import ConfigError
    from engine.train.run import Run

    process = start_training(tmp_path, "--epochs", "2000", "--name", "busy")
    try:
        wait_for_epochs(process, 1)
        with pytest.raises(ConfigError, match=r"is still training \(process \d+\)"):
            Run.resume(tmp_path / "checkpoints/busy", epochs=3000)
    finally:
        process.kill()
        process.wait()
