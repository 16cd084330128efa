"""One run per experiment directory at a time: ``<exp_dir>/run.lock``, held with ``flock`` and naming
its holder (pid, host, command, start time). The OS releases the lock when the holder dies, even by
``kill -9``, so a lock file left behind without a live holder is simply taken over.

The parts of one cache (``stage=cache cache.part=I``: disjoint shards, asr_kd.distill.cache) hold
it shared: they run beside each other, never beside a run that holds it alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asr_kd.errors import UserError

__all__ = ["ExpDirBusyError", "exp_dir_lock", "LOCK_NAME"]

LOCK_NAME = "run.lock"


class ExpDirBusyError(UserError, RuntimeError):
    """Another run holds the experiment directory."""


@contextmanager
def exp_dir_lock(root: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``root/run.lock`` for the duration of the block (``shared``: beside other shared holders);
    raise :class:`ExpDirBusyError` naming the holder when another live process holds it."""
    path = root / LOCK_NAME
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot lock the experiment directory {root}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExpDirBusyError(f"{root} is in use by another run ({_holder(fd)}); wait for it to "
                                  "finish or choose another exp_dir") from None
        if shared:  # the file names only an exclusive holder, and none is alive now: clear a dead one's
            os.ftruncate(fd, 0)
            yield
            return
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # no holder any more (the file stays: removing it would race)
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The holder as its lock file names it."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}")
    except (ValueError, KeyError, TypeError):
        return "the parts of a cache (stage=cache cache.part=...), or a holder not yet recorded"
