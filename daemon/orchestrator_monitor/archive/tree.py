"""The run directory as it is on disk, read without following anything.

`scan_tree` walks with `os.fwalk(follow_symlinks=False)` (which refuses a directory swapped for
a symlink mid-walk) and `lstat`s every name, so a symlink is listed with its target and never
followed, a FIFO, socket or device is listed and never opened, and hard links are recognised by
(device, inode) so each is copied once. Names stay bytes: they need not be UTF-8.
`open_beneath` opens a scanned file again one component at a time with `O_NOFOLLOW`, so nothing
outside the run directory can be reached even if the executor swaps a directory for a link.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .failures import ArchiveFailure

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file; `first` is the path of an earlier hard link to the same inode, if any."""

    relative: bytes
    size: int
    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int
    first: bytes | None = None


@dataclass
class Inventory:
    files: list[FileEntry] = field(default_factory=list)
    links: list[tuple[bytes, bytes]] = field(default_factory=list)  # (relative path, target)
    specials: list[tuple[bytes, str]] = field(default_factory=list)  # (relative path, kind)
    newest_change_ns: int = 0  # latest ctime of anything: how recently the directory changed

    @property
    def apparent_bytes(self) -> int:
        """What copying needs (sparse files count whole, as the copy writes them whole)."""
        return sum(entry.size for entry in self.files if entry.first is None)


def special_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character-device"),
        (stat.S_ISBLK, "block-device"),
    ):
        if test(mode):
            return kind
    return "unknown"


def scan_tree(run_dir: Path) -> Inventory:
    """Everything under `run_dir`; a missing directory is an empty run, a symlinked one is refused."""
    inventory = Inventory()
    try:
        top = os.lstat(run_dir)
    except FileNotFoundError:
        return inventory
    if not stat.S_ISDIR(top.st_mode):
        raise ArchiveFailure("unsafe_run_dir", f"{run_dir} is not a directory (a symbolic link is never followed)")
    inventory.newest_change_ns = top.st_ctime_ns
    seen: dict[tuple[int, int], bytes] = {}
    root = os.fsencode(run_dir)
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        prefix = os.path.relpath(dirpath, root)
        prefix = b"" if prefix == b"." else prefix + b"/"
        for name in sorted(filenames) + sorted(dirnames):
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing: not part of the run any more
            inventory.newest_change_ns = max(inventory.newest_change_ns, info.st_ctime_ns)
            relative = prefix + name
            if stat.S_ISDIR(info.st_mode):
                continue
            if stat.S_ISLNK(info.st_mode):
                inventory.links.append((relative, os.readlink(name, dir_fd=dirfd)))
            elif stat.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino)
                first = seen.setdefault(key, relative) if info.st_nlink > 1 else relative
                inventory.files.append(
                    FileEntry(
                        relative,
                        info.st_size,
                        info.st_dev,
                        info.st_ino,
                        info.st_mtime_ns,
                        info.st_ctime_ns,
                        None if first == relative else first,
                    )
                )
            else:
                inventory.specials.append((relative, special_kind(info.st_mode)))
    return inventory


def open_beneath(root_fd: int, relative: bytes) -> int:
    """Open `relative` under the directory `root_fd` without following a symlink at any component."""
    *parents, name = relative.split(b"/")
    fd = root_fd
    try:
        for part in parents:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = next_fd
        return os.open(name, FILE_FLAGS, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def open_root(run_dir: Path) -> int:
    return os.open(run_dir, _DIR_FLAGS)
