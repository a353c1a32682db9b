"""The staging journal: which payload files are already copied, durable and hashed.

A line is appended only after its file's `fdatasync` returned, so a line always stands for
data on disk; a line lost in a crash only costs a copy. On resume a file is skipped when its
source still has the same size, inode and times and its staged copy the same size: a large
run interrupted near the end does not start over. A journal whose header does not name this
run and format cannot be trusted, and its staging is removed by the caller.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson

from .tree import FileEntry

JOURNAL_NAME = "journal.jsonl"
JOURNAL_VERSION = 1


def _key(entry: FileEntry) -> list[int]:
    return [entry.size, entry.dev, entry.ino, entry.mtime_ns, entry.ctime_ns]


class Journal:
    """Append-only record of finished files; `record` is safe from several threads."""

    def __init__(self, path: Path, run_id: str, done: dict[str, tuple[list[int], str]]) -> None:
        self.path = path
        self._done = done
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not done and os.fstat(self._fd).st_size == 0:
                os.write(self._fd, orjson.dumps({"run_id": run_id, "version": JOURNAL_VERSION}) + b"\n")
        except OSError:
            os.close(self._fd)  # no journal object to close it later (a full disk)
            raise

    @classmethod
    def load(cls, path: Path, run_id: str) -> Journal | None:
        """The journal at `path` (a new one if there is none); None when it cannot be trusted."""
        try:
            lines = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return cls(path, run_id, {})
        try:
            header = orjson.loads(lines[0])
        except orjson.JSONDecodeError:
            return None
        if header != {"run_id": run_id, "version": JOURNAL_VERSION}:
            return None
        done: dict[str, tuple[list[int], str]] = {}
        for line in lines[1:]:
            try:
                item = orjson.loads(line)
                done[item["path"]] = (item["key"], item["sha256"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # the torn last line of a crash: that file is copied again
        return cls(path, run_id, done)

    @property
    def resumed_files(self) -> int:
        return len(self._done)

    def finished_hash(self, entry: FileEntry, bag_path: str, staged: Path) -> str | None:
        """The hash of an already staged copy of `entry`, or None when it must be copied."""
        known = self._done.get(bag_path)
        if known is None or known[0] != _key(entry):
            return None
        try:
            if os.lstat(staged).st_size != entry.size:
                return None
        except FileNotFoundError:
            return None
        return known[1]

    def record(self, entry: FileEntry, bag_path: str, sha256: str) -> None:
        line = orjson.dumps({"path": bag_path, "key": _key(entry), "sha256": sha256}) + b"\n"
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)
