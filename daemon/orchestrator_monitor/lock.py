"""Locks that die with their process: `flock` on files under `.monitor/`.

The daemon holds the workspace lock for its life, so a second daemon on the same workspace
is refused at once (exit 3) instead of double-marking; a crash or `kill -9` releases it.
A lock taken for one piece of work (a run's archival) is removed with `remove=True` when the
work is done, so months of runs do not leave a file each. That needs the usual care: the file
is unlinked while still locked, and whoever opened it before and gets the lock afterwards
finds the path no longer names its file and starts over on a new one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Unavailable


@contextmanager
def hold_lock(path: Path, what: str, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (holding our pid) or raise `Unavailable` naming the holder.

    `remove`: delete the file when done (it is only needed while held).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock_file(path, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if remove:
            path.unlink(missing_ok=True)  # still locked: nobody can be using it
        os.close(fd)  # closing the descriptor releases the lock


def _lock_file(path: Path, what: str) -> int:
    """A descriptor of the file `path` names, exclusively locked by us."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Unavailable(f"{what} is held by another process (pid {holder}); lock file {path}") from None
        except BaseException:
            os.close(fd)
            raise
        if _names(path, fd):
            return fd
        os.close(fd)  # its holder removed it between our open and our lock: take the new one


def _names(path: Path, fd: int) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
