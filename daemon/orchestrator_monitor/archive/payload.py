"""Stage the run directory's files as the bag's payload: copied in parallel, durable, journaled.

Copies run on COPY_THREADS threads (reads, writes and SHA-256 all release the GIL), their
`fdatasync` on the `SyncPool` beside them; the first failure stops the other copies at their
next chunk. Hard links are copied once and linked again inside the bag. The copy threads are
started once per process and serve every bag.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .copier import Flag, SyncPool, copy_and_hash
from .failures import Interrupted, storage_failure
from .journal import Journal
from .names import bag_path_for
from .tree import FileEntry, Inventory, RunDir, open_root

COPY_THREADS = 4
_COPY_THREADS = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="archive-copy")


@dataclass
class Payload:
    digests: dict[str, tuple[str, int]]  # bag path -> (sha256, bytes)
    copied_files: int = 0
    resumed_files: int = 0


class _Either:
    """Stop when the daemon stops or when another copy failed."""

    def __init__(self, stop: Flag, failed: threading.Event) -> None:
        self._stop = stop
        self._failed = failed

    def is_set(self) -> bool:
        return self._stop.is_set() or self._failed.is_set()


def stage_payload(
    run_dir: RunDir, bag_dir: Path, inventory: Inventory, journal: Journal, stop: Flag, shown: str
) -> Payload:
    """Copy every regular file of `inventory` under `bag_dir`, skipping what the journal has."""
    payload = Payload({})
    if not inventory.files:
        return payload
    failed = threading.Event()
    flag = _Either(stop, failed)
    lock = threading.Lock()
    root_fd = open_root(run_dir)
    sync = SyncPool()

    def stage(entry: FileEntry) -> None:
        bag_path = bag_path_for(entry.relative)
        staged = bag_dir / bag_path
        try:
            digest = journal.finished_hash(entry, bag_path, staged)
            size = entry.size
            copied = digest is None
            if digest is None:
                _make_parent(staged)
                fd, digest, size = copy_and_hash(root_fd, entry, staged, flag, shown)
                sync.submit(fd, partial(journal.record, entry, bag_path, digest))
            with lock:
                payload.digests[bag_path] = (digest, size)
                payload.copied_files += copied
        except BaseException:
            failed.set()
            raise

    copies: list[Future[None]] = []
    try:
        copies.extend(_COPY_THREADS.submit(stage, e) for e in inventory.files if e.first is None)
        _raise_first_cause([f.exception() for f in copies])
        sync.wait()
    finally:
        failed.set()  # if submitting failed part way, the copies queued stop at their first chunk
        wait(copies)
        sync.settle()
        os.close(root_fd)
    for entry in inventory.files:
        if entry.first is not None:
            _link_again(bag_dir, entry, payload)
    payload.resumed_files = journal.resumed_files
    return payload


def _raise_first_cause(errors: list[BaseException | None]) -> None:
    """The failure that stopped the copies, not the `Interrupted` of the copies it stopped."""
    found = [e for e in errors if e is not None]
    causes = [e for e in found if not isinstance(e, Interrupted)]
    if causes or found:
        raise (causes or found)[0]


def _make_parent(staged: Path) -> None:
    try:
        staged.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_failure(err, f"cannot create {staged.parent}") from None


def _link_again(bag_dir: Path, entry: FileEntry, payload: Payload) -> None:
    """A second name of a hard-linked file: a hard link in the bag too, same digest."""
    assert entry.first is not None
    first = bag_path_for(entry.first)
    bag_path = bag_path_for(entry.relative)
    staged = bag_dir / bag_path
    _make_parent(staged)
    staged.unlink(missing_ok=True)
    try:
        os.link(bag_dir / first, staged)
    except OSError as err:
        raise storage_failure(err, f"cannot link {bag_path}") from None
    payload.digests[bag_path] = payload.digests[first]
