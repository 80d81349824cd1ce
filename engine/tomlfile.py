"""Reading a TOML file a user names (``--config``): a regular file of a config file's size only.

A path can name a FIFO (opening it waits for a writer, forever), a device such as /dev/zero
(reading it never ends) or a file of gigabytes. Each is refused in one line before anything is
read: the path is checked with ``stat``, then opened without blocking and checked again on the
open file, so a FIFO put in its place between the two cannot hang the read either.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_BYTES = 1 << 20  # a config file lists a few dozen options: anything bigger is something else

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def read_toml(path: str | Path, what: str = "config file", follow_links: bool = True) -> dict[str, Any]:
    """The table in the TOML file at ``path``; a ConfigError naming ``what`` and the file otherwise.
    ``follow_links=False``: a link is refused too (a run directory's files are never followed)."""
    path = Path(path)
    try:
        text = _read_regular(path, what, follow_links).decode("utf-8")
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def _read_regular(path: Path, what: str, follow_links: bool) -> bytes:
    _check_regular(path, (os.stat if follow_links else os.lstat)(path).st_mode, what)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_links else os.O_NOFOLLOW))
    with os.fdopen(fd, "rb") as handle:
        _check_regular(path, os.fstat(fd).st_mode, what)
        data = handle.read(MAX_BYTES + 1)  # never more: the file may have grown since the stat
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{what} {path} cannot be read: it is over {MAX_BYTES // 2**20} MiB, "
                          f"too large for a config file")
    return data


def _check_regular(path: Path, mode: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise ConfigError(f"{what} {path} cannot be read: it is {kind}, not a regular file")
