"""Files that survive a crash: written and synced, or replaced atomically, and their directory synced.

Used by everything the monitor publishes as files (archives, reports): a reader finds the old
file or the new one, never a torn one, and a power loss after the call keeps the new one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FILE_MODE = 0o644


def write_durably(path: Path, data: bytes) -> None:
    """Write `path` anew (a read-only leftover is replaced) and `fdatasync` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)


def replace_files(contents: Mapping[Path, bytes]) -> None:
    """Each file under a temporary name, durable, renamed over the old one; then the directories synced."""
    for path, data in contents.items():
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        write_durably(temporary, data)
        os.replace(temporary, path)
    for directory in {path.parent for path in contents}:
        sync_directory(directory)


def sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
