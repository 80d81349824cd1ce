"""Which of a user's code torchdeck may import: the code they trained with here, or named themselves.

A run of the user's own model or data (``--model FILE.py:NAME``) records the reference and the
SHA-256 of its file in its config (``code``), and :func:`pin` adds the pair to a record in the
user's state folder (``trusted-code.json``). Rebuilding a model from a checkpoint (resume,
evaluate, predict, export, the browser) goes through :func:`admit`, which refuses, before
anything is imported, a reference that is not in that record (a crafted checkpoint naming
``os:system`` or a file elsewhere on the disk), a file that is gone (say where it is now with
``--code FILE``), and a file that changed since (``--code FILE`` takes it as it is now). Only then
does it :func:`engine.usercode.allow` the source, and engine.usercode imports nothing else.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterable

from engine import usercode
from engine.errors import CheckpointError, TorchdeckError
from engine.store.atomic import write_atomic
from engine.store.errorlog import state_folder

RECORD = "trusted-code.json"
MAX_RECORD = 4 << 20  # bytes
KEEP = 1000  # pairs kept, the newest
OPTIONS = ("model", "task")  # the options that may name the user's code


def references(config) -> dict[str, usercode.Reference]:
    """The options of ``config`` that name the user's code, and their references."""
    return {option: ref for option in OPTIONS if (ref := usercode.parse(getattr(config, option))) is not None}


def pin(config):
    """``config`` with the SHA-256 of each of its own code files recorded (``code``), that code
    trusted from now on and allowed to run in this process: what starting a new run means."""
    refs = references(config)
    if not refs:
        return config
    hashes = {option: usercode.sha256(ref, option) for option, ref in refs.items()}
    _grant([(refs[option].source, sha) for option, sha in hashes.items()])
    for ref in refs.values():
        usercode.allow(ref.source)
    return config.replace(code=hashes)


def admit(config, code: Iterable[str | Path] = ()):
    """``config`` (from a checkpoint) made ready to rebuild: each of its code references checked
    and allowed to run, or moved to a file of ``code`` (paths the user gave, ``--code``) with the
    same name. Raises CheckpointError, having imported nothing, for code that is not trusted."""
    refs = references(config)
    if not refs:
        return config
    given = {Path(path).name: os.path.realpath(os.path.expanduser(path)) for path in code}
    changes, hashes, granted = {}, dict(config.code), []
    for option, ref in refs.items():
        name = Path(ref.source).name if ref.is_file else None
        if name in given:  # the user said where the code is now: theirs to trust, as it is
            ref = usercode.Reference(given[name], ref.name)
            hashes[option] = usercode.sha256(ref, option)
            changes[option] = str(ref)
            granted.append((ref.source, hashes[option]))
        else:
            _check(option, ref, hashes.get(option))
        usercode.allow(ref.source)
    if granted:  # a run resumed from it records this content: its checkpoints must open later too
        _grant(granted)
    return config.replace(**changes, code=hashes)


def _check(option: str, ref: usercode.Reference, expected: str | None) -> None:
    """Refuse ``ref`` unless it is trusted with the hash ``expected`` and its file still has it."""
    where = f"the run's {option} is {ref}"
    flag = "--code FILE"
    if not isinstance(expected, str) or (ref.source, expected) not in _record():
        raise CheckpointError(f"{where}, code not trained with by torchdeck on this machine (or not with this "
                              f"content), so it is not run; if you trust it, name the file with {flag}")
    if ref.is_file and not os.path.isfile(ref.source):
        raise CheckpointError(f"{where}, and {ref.source} is gone; give its new place with {flag} "
                              f"(the file with SHA-256 {expected})")
    try:
        now = usercode.sha256(ref, option)
    except TorchdeckError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if now != expected:
        raise CheckpointError(f"{where}, and {usercode.source_file(ref, option)} changed since it was trained "
                              f"(SHA-256 {expected}, now {now}); to use it as it is now, name it with {flag}")


def record_path() -> Path:
    return state_folder() / RECORD


def _record() -> list[tuple[str, str]]:
    """The (source, sha256) pairs trusted so far, oldest first; an unreadable or malformed record
    (a link, a FIFO, anything but a regular file of JSON) trusts nothing."""
    path = record_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return []
            data: Any = json.loads(handle.read(MAX_RECORD + 1))
    except (OSError, ValueError):
        return []
    pairs = data.get("code") if isinstance(data, dict) else None
    if not isinstance(pairs, list):
        return []
    return [(p["source"], p["sha256"]) for p in pairs
            if isinstance(p, dict) and isinstance(p.get("source"), str) and isinstance(p.get("sha256"), str)]


def _grant(pairs: list[tuple[str, str]]) -> None:
    """Add ``pairs`` to the record, under a lock so that two runs starting at once both land."""
    folder = state_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / (RECORD + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CheckpointError(f"cannot record the code this run trusts in {folder}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        known = [pair for pair in _record() if pair not in pairs]
        entries = [{"source": source, "sha256": sha} for source, sha in (known + pairs)[-KEEP:]]
        body = json.dumps({"code": entries}, indent=1).encode()
        write_atomic(record_path(), lambda handle: handle.write(body))
    except OSError as exc:
        raise CheckpointError(f"cannot record the code this run trusts in {folder}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)

