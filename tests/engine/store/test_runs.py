"""Listing runs reads only what a run directory holds as regular files: a planted FIFO or link
in place of config.toml makes the folder no run, never a listing that hangs or reads elsewhere."""

from __future__ import annotations

import os
import shutil

from engine.store import runs


def test_a_config_that_is_a_fifo_or_a_link_is_no_run_and_the_listing_goes_on(iris, tmp_path):
    fifo, linked = tmp_path / "fifo-run", tmp_path / "linked-run"
    for folder in (fifo, linked):
        shutil.copytree(iris, folder)
        (folder / "config.toml").unlink()
    os.mkfifo(fifo / "config.toml")  # opening it to read would wait for a writer, for ever
    (linked / "config.toml").symlink_to(iris / "config.toml")
    assert runs.summary(fifo) is None and runs.summary(linked) is None
    assert runs.summary(iris)["task"] == "iris"
