"""The run directory as it is on disk, read without following anything.

`scan_tree` walks from directory descriptors, opening each subdirectory beneath its parent with
`O_NOFOLLOW` (a directory swapped for a symlink mid-walk is refused), and `lstat`s every name,
so a symlink is listed with its target and never followed, a FIFO, socket or device is listed
and never opened, and hard links are recognised by (device, inode) so each is copied once.
Names stay bytes: they need not be UTF-8. A directory or name the monitor may not read fails
the scan (`permission`), naming it: never a silently smaller bag (`os.fwalk` skips such a
directory, and its `onerror` would only get the last component of the name).
`open_beneath` opens a scanned file again one component at a time with `O_NOFOLLOW`, so nothing
outside the run directory can be reached even if the executor swaps a directory for a link.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .failures import ArchiveFailure
from .names import listing_name

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs


@dataclass(frozen=True, slots=True)
class RunDir:
    """A run directory as its workspace and a path inside it, opened by `open_root` one component at a time."""

    workspace: Path
    relative: Path

    def __fspath__(self) -> str:
        return str(self.workspace / self.relative)

    def __str__(self) -> str:
        return self.__fspath__()


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


def scan_tree(run_dir: RunDir) -> Inventory:
    """Everything under `run_dir`; a missing directory is an empty run, a symlinked one is refused."""
    inventory = Inventory()
    try:
        root_fd = open_root(run_dir)
    except FileNotFoundError:
        return inventory
    except PermissionError:
        raise ArchiveFailure("permission", f"cannot list {run_dir}: permission denied") from None
    try:
        inventory.newest_change_ns = os.fstat(root_fd).st_ctime_ns
        _scan_directory(root_fd, b"", inventory, {}, os.fsencode(run_dir))
    finally:
        os.close(root_fd)
    return inventory


def _scan_directory(
    dirfd: int, prefix: bytes, inventory: Inventory, seen: dict[tuple[int, int], bytes], run_path: bytes
) -> None:
    """One directory's names, sorted, then its subdirectories, each opened beneath it without following."""
    subdirectories: list[bytes] = []
    for name in sorted(os.fsencode(entry) for entry in os.listdir(dirfd)):
        relative = prefix + name
        try:
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since the listing: not part of the run any more
        except PermissionError:
            raise _unreadable(run_path, relative) from None
        inventory.newest_change_ns = max(inventory.newest_change_ns, info.st_ctime_ns)
        if stat.S_ISDIR(info.st_mode):
            subdirectories.append(name)
        elif stat.S_ISLNK(info.st_mode):
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
    for name in subdirectories:
        try:
            subfd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        except PermissionError:
            raise _unreadable(run_path, prefix + name) from None
        except OSError as err:
            if err.errno not in _GONE_ERRNOS:
                raise
            continue  # removed or swapped for a link since the listing: not followed
        try:
            _scan_directory(subfd, prefix + name + b"/", inventory, seen, run_path)
        finally:
            os.close(subfd)


def _unreadable(run_path: bytes, relative: bytes) -> ArchiveFailure:
    return ArchiveFailure("permission", f"cannot read {listing_name(run_path + b'/' + relative)}: permission denied")


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


def open_root(run_dir: RunDir) -> int:
    """Open `run_dir` from its workspace one component at a time, following a symlink at none of them.

    `ids.run_directory` keeps the path inside the workspace as text only: with `runs/r1` a link
    to `/outside`, `run_dir = runs/r1/sub` would lead outside. Only the workspace may be a link.
    """
    fd = os.open(run_dir.workspace, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in run_dir.relative.parts:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            detail = f"{run_dir}: {part} is a symbolic link or not a directory (never followed)"
            raise ArchiveFailure("unsafe_run_dir", detail) from None
        raise
    return fd
