"""Deleting a run directory's files or a local bag so that a kill -9 at any point leaves nothing that looks live.

A run directory is first renamed, in `runs/`, to `.retention-check-<id>` (no run id starts with a
dot, so nothing takes it for a run), compared with the bag there, then renamed to
`.retention-delete-<id>` before the first file goes; once the files that are in the bag are gone,
the directory is removed, or renamed back to `runs/<id>` when something the bag does not have is
left in it. A local bag is renamed to `<archive root>/.retention-delete-<id>` and then removed.
Every rename is made durable (an fsync of the parent) before the next step.

After a crash the next pass finds the names: `.retention-check-<id>` had nothing deleted and goes
back to `runs/<id>`; a `.retention-delete-` directory is finished (retention/prune.py re-verifies
the bag first, and deletes again only files that still match it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..archive.bag import make_writable
from ..durable import sync_directory

CHECKING = ".retention-check-"
DELETING = ".retention-delete-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def aside(original: Path, prefix: str) -> Path:
    """`original`'s name while retention works on it (`prefix` + its name, in the same parent)."""
    return original.parent / f"{prefix}{original.name}"


def rename_durably(source: Path, destination: Path) -> None:
    """Rename a directory within its parent, never over one that holds something (`OSError` then)."""
    if destination.exists():
        raise OSError(errno.EEXIST, f"{destination} exists")
    os.rename(source, destination)
    sync_directory(destination.parent)


def leftovers(parent: Path, prefix: str) -> list[tuple[str, Path]]:
    """(run id, path) of every directory `prefix` names under `parent` (what a crash left)."""
    if not parent.is_dir():
        return []
    found = [(p.name[len(prefix) :], p) for p in parent.iterdir() if p.name.startswith(prefix)]
    return sorted(found)


def delete_files(directory: Path, names: list[bytes]) -> None:
    """Unlink each relative name under `directory` (no component followed), then every directory that
    became empty by it, bottom up; a name already gone is skipped (a resumed deletion)."""
    top = os.open(directory, _DIR_FLAGS)
    emptied: set[bytes] = set()
    try:
        for relative in names:
            *parents, name = relative.split(b"/")
            with _opened(top, parents) as fd:
                if fd is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
            emptied.update(b"/".join(parents[:n]) for n in range(1, len(parents) + 1))
        for relative in sorted(emptied, key=lambda r: r.count(b"/"), reverse=True):
            *parents, name = relative.split(b"/")
            with _opened(top, parents) as fd:
                if fd is not None:
                    with contextlib.suppress(OSError):  # not empty: something not in the bag is in it
                        os.rmdir(name, dir_fd=fd)
        os.fsync(top)
    finally:
        os.close(top)


@contextlib.contextmanager
def _opened(top: int, parts: list[bytes]) -> Iterator[int | None]:
    """A descriptor of the directory `parts` beneath `top` (None when it is gone or not a directory)."""
    fd = top
    try:
        for part in parts:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                yield None
                return
            if fd != top:
                os.close(fd)
            fd = next_fd
        yield fd
    finally:
        if fd != top:
            os.close(fd)


def is_empty(directory: Path) -> bool:
    return not any(directory.iterdir())


def remove_tree(path: Path) -> None:
    """Remove a bag set aside (it was sealed read-only)."""
    make_writable(path)
    shutil.rmtree(path)
    sync_directory(path.parent)
