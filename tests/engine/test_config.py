"""RunConfig: presets, validation messages, TOML round trip, override order."""

from __future__ import annotations

import os
import re
import signal

import pytest

from engine.config import RunConfig, command_line
from engine.errors import ConfigError


def test_default_task_is_the_seed_iris_run():
    config = RunConfig.for_task()
    assert config.task == "iris"
    assert (config.model, config.hidden, config.activation, config.dropout) == ("mlp", (16, 8), "relu", 0.2)
    assert (config.optimizer, config.lr, config.scheduler, config.epochs) == ("adam", 0.01, "step", 100)


@pytest.mark.parametrize(
    "task, expected",
    [
        ("breast-cancer", dict(hidden=(64, 32), optimizer="adam", loss="auto")),
        ("linear", dict(hidden=(32, 32), optimizer="adam", lr=1e-3, batch_size=32, epochs=50)),
    ],
)
def test_seed_presets(task, expected):
    config = RunConfig.for_task(task)
    for key, value in expected.items():
        assert getattr(config, key) == value


def test_overrides_win_over_the_preset():
    config = RunConfig.for_task("iris", lr=0.1, hidden="32, 16,8")
    assert config.lr == 0.1 and config.hidden == (32, 16, 8)
    assert config.dropout == 0.2  # untouched preset value


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(task="irs"), "task: 'irs' is not a known task; choose one of iris"),
        (dict(task="irs"), "did you mean 'iris'?"),
        (dict(model="mpl"), "did you mean 'mlp'?"),
        (dict(optimizer="adamm"), "did you mean 'adam'?"),
        (dict(scheduler="cosin"), "did you mean 'cosine'?"),
        (dict(activation="relu6"), "did you mean 'relu'?"),
        (dict(lr=-1), "lr: -1.0 is not allowed; it must be greater than 0"),
        (dict(lr="fast"), "lr: 'fast' is not allowed; it must be a finite number"),
        (dict(lr=float("nan")), "lr: nan is not allowed"),
        (dict(epochs=0), "epochs: 0 is not allowed; it must be at least 1"),
        (dict(epochs=2.5), "epochs: 2.5 is not allowed; it must be a whole number"),
        (dict(dropout=1.0), "dropout: 1.0 is not allowed; it must be in [0, 1)"),
        (dict(hidden="16,x"), "hidden: '16,x' is not allowed; it must be a list of whole numbers"),
        (dict(hidden="16,0"), "every layer size must be at least 1"),
        (dict(hidden=""), "the mlp model needs at least one hidden layer"),
        (dict(batch_norm="maybe"), "batch_norm: 'maybe' is not allowed; it must be true or false"),
        (dict(device="gpu"), "device: 'gpu' is not allowed; use auto, cpu, cuda, cuda:N or mps"),
        (dict(loss="mse"), "loss: 'mse' does not fit the multiclass task 'iris'"),
        (dict(monitor="r2"), "monitor: 'r2' is not measured for the multiclass task 'iris'"),
        (dict(val_fraction=0.7), "val_fraction: 0.7 is not allowed"),
        (dict(learning_rate=0.1), "unknown option 'learning_rate'"),
        (dict(epoch=3), "unknown option 'epoch' (did you mean 'epochs'?)"),
    ],
)
def test_bad_values_are_explained(values, message):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_values(values)
    assert message in str(error.value)


def test_regression_accepts_regression_losses_and_monitors():
    config = RunConfig.for_task("diabetes", loss="huber", monitor="r2")
    assert (config.loss, config.monitor) == ("huber", "r2")


def test_toml_round_trip(tmp_path):
    config = RunConfig.for_task("wine", hidden=[8], batch_norm=True, name="my-run", seed=7)
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert RunConfig.from_toml(path) == config


def test_a_partial_toml_file_starts_from_its_tasks_preset(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "linear"\nepochs = 3\n')
    config = RunConfig.from_toml(path)
    assert (config.task, config.epochs, config.hidden) == ("linear", 3, (32, 32))


@pytest.mark.parametrize(
    "text, message",
    [
        ("task = ", "is not valid TOML"),
        ("lrr = 0.1", "unknown option 'lrr' (did you mean 'lr'?)"),
        ('epochs = "many"', "epochs: 'many' is not allowed"),
    ],
)
def test_bad_toml_files_are_explained(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        RunConfig.from_toml(path)


def test_missing_toml_file():
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.read_toml("/nonexistent/run.toml")


class Hung(BaseException):
    """A call that blocked (not an OSError, which the reader would report as a read error)."""


@pytest.fixture
def unless_it_hangs():
    """Fail a test whose call blocks instead of hanging the suite: opening a FIFO waits for a
    writer forever."""
    def hung(signum, frame):
        raise Hung

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_config_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, unless_it_hangs):
    os.mkfifo(tmp_path / "run.toml")
    with pytest.raises(ConfigError, match=r"run\.toml cannot be read: it is a FIFO \(named pipe\), not a regular"):
        RunConfig.read_toml(tmp_path / "run.toml")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_config_that_is_a_device_is_refused_before_it_is_read(unless_it_hangs):
    with pytest.raises(ConfigError, match=r"/dev/zero cannot be read: it is a character device, not a regular file"):
        RunConfig.read_toml("/dev/zero")


def test_a_config_file_over_a_mebibyte_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("# a comment\n" * 100_000 + "epochs = 3\n")  # valid TOML, 1.2 MB
    with pytest.raises(ConfigError, match=r"run\.toml cannot be read: it is over 1 MiB, too large for a config file"):
        RunConfig.read_toml(path)
    path.write_text("# a comment\n" * 80_000 + "epochs = 3\n")  # just under the limit: a config
    assert RunConfig.read_toml(path) == {"epochs": 3}


def test_a_list_for_the_task_in_a_config_file_is_one_error(tmp_path):
    (tmp_path / "run.toml").write_text("task = []\n")
    with pytest.raises(ConfigError, match=r"^task: '\[\]' is not a known task"):
        RunConfig.from_toml(tmp_path / "run.toml")


@pytest.mark.parametrize("device", ["cuda:01", "cuda:00", "cuda:-1", "cpu:5", "meta", "cuda:", "cuda:+1"])
def test_device_names_torch_would_refuse_or_misread_are_refused(device):
    message = f"device: '{device}' is not allowed; use auto, cpu, cuda, cuda:N or mps"
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        RunConfig.for_task(device=device)


def test_a_cuda_index_of_any_size_is_left_for_the_machine_to_judge():
    assert RunConfig.for_task(device="cuda:99999999999999999999999").device == "cuda:99999999999999999999999"


def test_data_dir_is_refused_for_tasks_that_bring_their_data():
    with pytest.raises(ConfigError, match="comes with its data"):
        RunConfig.for_task("iris", data_dir="/tmp")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "x\\y"])
def test_run_names_stay_inside_the_output_folder(name):
    with pytest.raises(ConfigError, match="plain folder name"):
        RunConfig.for_task(name=name)


def test_image_models_are_refused_for_tables():
    with pytest.raises(ConfigError, match="'convnet' needs image inputs, and the task 'wine' is a table"):
        RunConfig.for_task("wine", model="convnet")


@pytest.mark.parametrize(
    "values, option",
    [
        (dict(task="irs"), "task"),
        (dict(lr=-1), "lr"),
        (dict(lr="fast"), "lr"),
        (dict(hidden=""), "hidden"),
        (dict(loss="mse"), "loss"),
        (dict(monitor="r2"), "monitor"),
        (dict(task="wine", model="convnet"), "model"),
        (dict(image_size=32), "image_size"),
        (dict(batch_norm=True, batch_size=1), "batch_size"),
        (dict(data_dir="/tmp"), "data_dir"),
        (dict(name="a/b"), "name"),
        (dict(val_fraction=0.4, test_fraction=0.3), None),  # two options at fault
        (dict(epoch=3), None),  # no option of that name
    ],
)
def test_an_error_names_the_option_it_belongs_to(values, option):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_values(values)
    assert error.value.option == option
    if option is not None:
        assert str(error.value).startswith(f"{option}: ")


def test_the_command_line_of_a_config_uses_the_cli_spelling():
    config = RunConfig.for_task("wine", hidden=[8, 4], batch_size=8, nesterov=True, optimizer="sgd")
    assert command_line(config) == ("torchdeck train --task wine --hidden 8,4 --optimizer sgd --nesterov "
                                    "--batch-size 8")


def test_a_home_folder_in_a_path_option_is_expanded_however_it_came(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = RunConfig.from_values({"task": "csv", "data_dir": "~/data.csv", "out": "~/runs",
                                    "weights": "~/w.pt", "name": "~"})
    assert (config.data_dir, config.out, config.weights) == (f"{tmp_path}/data.csv", f"{tmp_path}/runs",
                                                            f"{tmp_path}/w.pt")
    assert config.name == "~"  # a name is not a path
    assert f"--out {tmp_path}/runs" in command_line(config)
