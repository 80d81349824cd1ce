"""The wizard's learning-rate finder, driven by key presses: Ctrl+F on the training step runs
the range test in a job, shows its curve and suggestion, and Enter fills the lr row with it."""

from __future__ import annotations

import pytest
from conftest import calm, drive, until

from engine.config import RunConfig
from tui.lrfind import LrFindScreen


async def to_training(pilot, screen) -> None:
    for _ in range(2):  # iris: task, model
        await pilot.press("enter")
        await calm(pilot, screen)
    assert screen.step == "training"


async def finder(pilot) -> LrFindScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, LrFindScreen) and pilot.app.screen.suggestion)
    return pilot.app.screen


def test_find_fills_the_lr_row_with_the_suggestion(tmp_path):
    async def scenario(pilot, screen):
        await to_training(pilot, screen)
        await pilot.press("ctrl+f")
        found = await finder(pilot)
        verdict = str(found.query_one("#verdict").render())
        assert "suggested lr" in verdict and "valley" in verdict
        suggestion = found.suggestion
        await pilot.press("enter")
        await calm(pilot, screen)
        assert pilot.app.screen is screen
        return suggestion, screen.query_one("#lr").value, screen.config

    suggestion, typed, config = drive(tmp_path, scenario)
    assert float(typed) == pytest.approx(suggestion, rel=1e-2)
    assert config.lr == pytest.approx(suggestion, rel=1e-2)
    assert config == RunConfig.for_task("iris", out=str(tmp_path), lr=float(typed))


def test_escape_keeps_the_lr_and_the_key_is_only_on_the_training_step(tmp_path):
    async def scenario(pilot, screen):
        await pilot.press("ctrl+f")  # the task step: nothing opens
        await pilot.pause()
        assert pilot.app.screen is screen
        await to_training(pilot, screen)
        await pilot.press("ctrl+f")
        await finder(pilot)
        await pilot.press("escape")
        await calm(pilot, screen)
        assert pilot.app.screen is screen
        return screen.query_one("#lr").value, screen.config

    typed, config = drive(tmp_path, scenario)
    assert typed == "0.01" and config == RunConfig.for_task("iris", out=str(tmp_path))


def test_a_bad_training_value_is_marked_instead(tmp_path):
    async def scenario(pilot, screen):
        await to_training(pilot, screen)
        screen.query_one("#lr").value = "-1"
        await calm(pilot, screen)
        await pilot.press("ctrl+f")
        await pilot.pause()
        return pilot.app.screen is screen, screen.focused.id, screen.errors["training"]

    same, focused, errors = drive(tmp_path, scenario)
    assert same and focused == "lr" and "lr" in errors
