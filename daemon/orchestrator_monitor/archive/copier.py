"""Copy one file into staging and hash it from the same read; make copies durable beside the copying.

Each chunk read is hashed and written, so the payload is read once. A file whose size or
times change while it is copied is copied again, up to CHANGE_ATTEMPTS times, then reported
(`source_changed`). `fdatasync` of each copy runs on a small pool of its own (`SyncPool`),
overlapping the next copies instead of one global `sync` that would flush other programs' data.
Its threads are started once per process and serve every bag: a pool per bag started and ended
several threads a bag, hours on end.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from .chunks import chunk_buffer
from .failures import PERMISSION_ERRNOS, ArchiveFailure, Interrupted, storage_failure
from .names import listing_name
from .tree import FileEntry, open_beneath

CHANGE_ATTEMPTS = 3
SYNC_THREADS = 4
_SYNC_THREADS = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="archive-sync")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


class Flag(Protocol):
    def is_set(self) -> bool: ...


def copy_and_hash(root_fd: int, entry: FileEntry, destination: Path, stop: Flag, shown: str) -> tuple[int, str, int]:
    """Copy `entry` to `destination`; returns the still-open destination descriptor, SHA-256 and size."""
    name = f"{shown}/{listing_name(entry.relative)}"
    try:
        out = os.open(destination, _WRITE_FLAGS, 0o644)
    except OSError as err:
        raise storage_failure(err, f"cannot create the copy of {name}") from None
    try:
        for _ in range(CHANGE_ATTEMPTS):
            copied = _copy_once(root_fd, entry, out, stop, name)
            if copied is not None:
                return out, *copied
            os.ftruncate(out, 0)
            os.lseek(out, 0, os.SEEK_SET)
    except BaseException:
        os.close(out)
        raise
    os.close(out)
    raise ArchiveFailure("source_changed", f"{name} kept changing while it was copied ({CHANGE_ATTEMPTS} attempts)")


def _copy_once(root_fd: int, entry: FileEntry, out: int, stop: Flag, name: str) -> tuple[str, int] | None:
    """One attempt: the hash and size, or None when the source changed during the copy."""
    try:
        source = open_beneath(root_fd, entry.relative)
    except OSError as err:
        if err.errno in PERMISSION_ERRNOS:
            raise ArchiveFailure("permission", f"cannot read {name}: permission denied") from None
        raise ArchiveFailure("source_changed", f"{name} could not be opened any more: {err.strerror}") from None
    try:
        before = os.fstat(source)
        if not stat.S_ISREG(before.st_mode):
            raise ArchiveFailure("source_changed", f"{name} is no longer a regular file")
        digest, size = _stream(source, out, stop, name)
        after = os.fstat(source)
    finally:
        os.close(source)
    unchanged = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (size, after.st_mtime_ns, after.st_ctime_ns)
    return (digest, size) if unchanged and after.st_size == size else None


def _stream(source: int, out: int, stop: Flag, name: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    buffer = chunk_buffer()
    view = memoryview(buffer)
    total = 0
    while True:
        if stop.is_set():
            raise Interrupted()
        try:
            count = os.readv(source, [buffer])
        except OSError as err:
            if err.errno in PERMISSION_ERRNOS:
                raise ArchiveFailure("permission", f"cannot read {name}: permission denied") from None
            raise ArchiveFailure("io", f"reading {name}: {err.strerror}") from None
        if count == 0:
            return hasher.hexdigest(), total
        chunk = view[:count]
        hasher.update(chunk)
        try:
            written = 0
            while written < count:
                written += os.write(out, chunk[written:])
        except OSError as err:
            raise storage_failure(err, f"writing the copy of {name}") from None
        total += count


class SyncPool:
    """One bag's `fdatasync` + close of finished copies, on the process's sync threads; `then` runs once a
    copy is durable."""

    def __init__(self) -> None:
        self._futures: list[Future[None]] = []

    def submit(self, fd: int, then: Callable[[], None]) -> None:
        self._futures.append(_SYNC_THREADS.submit(_sync_close, fd, then))

    def wait(self) -> None:
        """Wait for every submitted copy; the first failure is raised (as a storage failure)."""
        futures, self._futures = self._futures, []
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def settle(self) -> None:
        """Wait for every submitted copy, failed or not: each descriptor is closed on return."""
        wait(self._futures)


def _sync_close(fd: int, then: Callable[[], None]) -> None:
    try:
        os.fdatasync(fd)
    except OSError as err:
        raise storage_failure(err, "making a copy durable") from None
    finally:
        os.close(fd)
    then()
