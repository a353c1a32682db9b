"""One offload pass: per target, each bag the catalog has without a copy there, oldest first.

A bag's files go in stages (payload, tag files, the tag manifest last), several at once; a file the
journal already has confirmed with the same digest is not sent again. Once every file is confirmed,
the copy's location goes into the catalog and `ARCHIVE_OFFLOADED` is published. A failure gives
`OFFLOAD_FAILED`, is counted and retried next pass; the local bag is only ever read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..config import OffloadSettings
from ..events.types import EventType, Publish
from ..ledger.catalog import ArchiveEntry, Catalog
from ..timefmt import format_timestamp
from .choose import BagFile, bags_to_send, upload_stages
from .journal import Confirmed, OffloadJournal
from .pacing import OffloadStopped, TokenBucket
from .plan import bag_files
from .targets import Target, TargetError, Uploads

logger = logging.getLogger(__name__)
BAGS_PER_PASS = 1000  # the rest wait for the next pass (the oldest go first)
JOURNAL_SECONDS = 0.5


@dataclass
class OffloadPass:
    sent: list[tuple[str, str]] = field(default_factory=list)  # (target, run id)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (target, run id, reason)
    files_sent: int = 0
    bytes_sent: int = 0


class Offloader:
    def __init__(
        self,
        settings: OffloadSettings,
        targets: Sequence[Target],
        catalog: Catalog,
        journal: OffloadJournal,
        publish: Publish,
        stop: threading.Event,
        archive_root: Path,
    ) -> None:
        self._settings = settings
        self.targets = list(targets)
        self._catalog = catalog
        self._journal = journal
        self._publish = publish
        self._stop = stop
        self._root = str(archive_root)
        self._pool = ThreadPoolExecutor(settings.parallel, thread_name_prefix="offload")
        self.failures = 0  # every bag not sent, since the start

    def run_pass(self, now: datetime) -> OffloadPass:
        done = OffloadPass()
        bucket = TokenBucket(self._settings.bytes_per_second, self._stop)
        for target in self.targets:
            due = bags_to_send(self._catalog.not_stored_under(target.base, self._root, BAGS_PER_PASS), BAGS_PER_PASS)
            for entry in due:
                try:
                    self.offload(target, entry, bucket, now, done)
                except OffloadStopped:
                    return done
                except TargetError as err:
                    self.failures += 1
                    done.failed.append((target.name, entry.run_id, err.reason))
                    logger.warning("offload of run %s to %s failed: %s", entry.run_id, target.name, err)
                    data = {"target": target.name, "reason": err.reason, "detail": err.detail}
                    self._publish(EventType.OFFLOAD_FAILED, data, run_id=entry.run_id)
        return done

    def offload(
        self, target: Target, entry: ArchiveEntry, bucket: TokenBucket, now: datetime, done: OffloadPass
    ) -> None:
        """Send the bag's files not yet confirmed at `target`, then record and announce its copy."""
        bag = Path(entry.locations[0]) if entry.locations else None
        if bag is None or not bag.is_dir():
            raise TargetError("bag_gone", f"run {entry.run_id}: no local bag to send ({bag})")
        files = bag_files(bag)
        at = format_timestamp(now)
        confirmed = self._journal.confirmed(target.name, entry.run_id)
        uploads = self._journal.uploads(target.name, entry.run_id, at)
        target.prepare(entry.run_id)
        for stage in upload_stages(files):
            todo = [f for f in stage if f.path not in confirmed or confirmed[f.path].sha256 != f.sha256]
            self._send_all(target, entry.run_id, bag, todo, bucket, uploads, at, done)
        total = sum(f.size for f in files)
        location = target.location(entry.run_id)
        self._catalog.add_location(entry.run_id, target.kind, location, at)
        done.sent.append((target.name, entry.run_id))
        data = {
            "archive_path": str(bag),
            "target": target.name,
            "location": location,
            "files": len(files),
            "bytes": total,
        }
        self._publish(EventType.ARCHIVE_OFFLOADED, data, run_id=entry.run_id)

    def _send_all(
        self,
        target: Target,
        run_id: str,
        bag: Path,
        files: list[BagFile],
        bucket: TokenBucket,
        uploads: Uploads,
        at: str,
        done: OffloadPass,
    ) -> None:
        """Every file of one stage, `offload.parallel` at once, the largest first (the stage ends sooner); the
        first failure stops the stage. Confirmations are journalled together, at most `JOURNAL_SECONDS` late
        and at the stage's end: one commit (an fsync) per file cost a third of the throughput, and one lost to
        a crash is only a file sent again."""
        lock = threading.Lock()
        unwritten: list[Confirmed] = []
        written = [time.monotonic()]

        def journal(force: bool) -> None:
            with lock:
                if not unwritten or not (force or time.monotonic() - written[0] >= JOURNAL_SECONDS):
                    return
                rows, unwritten[:], written[0] = list(unwritten), [], time.monotonic()
                self._journal.confirm(target.name, run_id, rows, at)

        def send(file: BagFile) -> None:
            checksum = target.send(run_id, file, bag, bucket, uploads)
            with lock:
                unwritten.append(Confirmed(file.path, file.sha256, file.size, checksum))
                done.files_sent += 1
                done.bytes_sent += file.size
            journal(force=False)

        futures = [self._pool.submit(send, file) for file in sorted(files, key=lambda f: -f.size)]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        wait(pending)
        journal(force=True)  # what was confirmed, even when the stage failed
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for target in self.targets:
            target.close()
