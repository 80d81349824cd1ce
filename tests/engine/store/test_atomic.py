"""Atomic files: a write replaces the file whole, or fails and leaves the previous one as it was."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from engine.errors import CheckpointError
from engine.store.atomic import remove_stale, staged, write_atomic


def torn(handle):
    """A write that stops halfway, as on a full disk."""
    handle.write(b"half of the new")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"old")
    assert write_atomic(path, lambda handle: handle.write(b"new")) == path
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_a_failed_write_keeps_the_previous_file_and_says_so_in_one_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"old")
    with pytest.raises(CheckpointError) as caught:
        write_atomic(path, torn)
    assert str(caught.value) == (f"cannot write config.toml in {tmp_path}: No space left on device; "
                                 f"the previous config.toml is intact")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["config.toml"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(CheckpointError, match=f"^cannot write new.pt in {tmp_path}: No space left on device$"):
        write_atomic(tmp_path / "new.pt", torn)
    assert os.listdir(tmp_path) == []


def test_a_write_into_a_missing_folder_names_it(tmp_path):
    with pytest.raises(CheckpointError, match=f"cannot write last.pt in {tmp_path / 'gone'}: No such file"):
        write_atomic(tmp_path / "gone" / "last.pt", lambda handle: handle.write(b"x"))


def test_an_error_of_the_writer_itself_passes_through_and_leaves_nothing(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"old")

    def broken(handle):
        handle.write(b"some")
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        write_atomic(path, broken)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["best.pt"]


def test_a_staged_file_is_published_only_when_the_block_ends_normally(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with staged(path) as temporary:
            temporary.write_bytes(b"unverified")
            assert path.read_bytes() == b"old"  # nothing is replaced before the block ends
            raise RuntimeError("the check failed")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
    with staged(path) as temporary:
        temporary.write_bytes(b"verified")
    assert path.read_bytes() == b"verified" and os.listdir(tmp_path) == ["model.onnx"]


def test_only_the_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    names = {
        "dead": f".last.pt.{int(dead.stdout)}.tmp",
        "alive": f".last.pt.{os.getppid()}.tmp",  # the process that started these tests
        "own": f".best.pt.{os.getpid()}.tmp",  # a write of this process, in progress
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    remove_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([names["alive"], names["own"]])



@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_under_torch_save_is_the_same_one_line(tmp_path):
    """torch's zip writer reports a full disk as its own RuntimeError (inline_container.cc)."""
    import torch

    def onto_a_disk_that_fills(handle):
        class Filling:  # the disk fills up in the first large write, the buffer written before it
            def write(self, data):
                if len(data) > 10_000:
                    handle.flush()
                    full = os.open("/dev/full", os.O_WRONLY)  # refuses every write with ENOSPC
                    os.dup2(full, handle.fileno())
                    os.close(full)
                return handle.write(data)

            def flush(self):
                handle.flush()

        torch.save({"weights": torch.zeros(100_000)}, Filling())

    with pytest.raises(CheckpointError, match=f"^cannot write last.pt in {tmp_path}: No space left on device$"):
        write_atomic(tmp_path / "last.pt", onto_a_disk_that_fills)
    assert os.listdir(tmp_path) == []


def test_a_write_over_a_link_replaces_the_link_and_leaves_its_target(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("alias ls='ls -F'\n")
    link = tmp_path / "run" / "config.toml"
    link.parent.mkdir()
    link.symlink_to(target)
    write_atomic(link, lambda handle: handle.write(b'task = "iris"\n'))
    assert not link.is_symlink() and link.read_text() == 'task = "iris"\n'
    assert target.read_text() == "alias ls='ls -F'\n"


def test_a_link_planted_under_the_temporary_name_is_not_written_through(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("alias ls='ls -F'\n")
    (tmp_path / f".last.pt.{os.getpid()}.tmp").symlink_to(target)  # the name this process writes under
    write_atomic(tmp_path / "last.pt", lambda handle: handle.write(b"weights"))
    assert (tmp_path / "last.pt").read_bytes() == b"weights" and target.read_text() == "alias ls='ls -F'\n"
    assert sorted(os.listdir(tmp_path)) == ["bashrc", "last.pt"]
