"""Build a bag in `<archive root>/.staging/<run_id>/` and publish it; resume or discard what a crash left.

The staging folder sits beside the archives (same file system, so publication is a rename)
under a name no run id can take (run ids never start with '.'). It holds the bag being built
and the journal. A stop (`Interrupted`) or a failure that a retry can fix keeps both, so the
next attempt resumes; a full disk removes them (nothing partial stays behind to fill it
further), and so does a run found reopened (its next archival is of another end, with
other files); a journal that cannot be trusted discards the staging and starts clean.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from ..events.types import Event
from .bag import (
    EVENTS_PATH,
    SNAPSHOT_PATH,
    BagSummary,
    hash_file,
    make_writable,
    publish,
    seal,
    seal_top,
    write_events,
    write_tag_files,
)
from .copier import Flag
from .failures import ArchiveFailure, storage_failure
from .journal import JOURNAL_NAME, Journal
from .names import bag_path_for, is_utf8, listing_name
from .payload import Payload, stage_payload
from .tree import Inventory, RunDir

STAGING_DIR = ".staging"


def staging_for(archive_root: Path, run_id: str) -> Path:
    return archive_root / STAGING_DIR / run_id


def remove_staging(staging: Path) -> None:
    if staging.exists():
        make_writable(staging)
        shutil.rmtree(staging)
    with contextlib.suppress(OSError):  # the shared .staging folder goes once it is empty
        staging.parent.rmdir()


def special_lines(inventory: Inventory) -> list[str]:
    """special-files.txt: FIFOs, sockets, devices (never opened) and names kept under another name."""
    lines = [f"data/run/{listing_name(path)}\t{kind}" for path, kind in sorted(inventory.specials)]
    for entry in inventory.files:
        if not is_utf8(entry.relative):
            lines.append(f"data/run/{listing_name(entry.relative)}\tundecodable-name\t{bag_path_for(entry.relative)}")
    return lines


def build_and_publish(
    *,
    run_id: str,
    status: str,
    run_dir: RunDir,
    final: Path,
    inventory: Inventory,
    snapshot: Callable[[Path], None],
    events: Callable[[], Iterable[Event]],
    release: Callable[[Callable[[], None]], None],
    stop: Flag,
    shown: str,
    now: datetime,
) -> tuple[BagSummary, Payload]:
    """Stage the whole bag (resuming from the journal), seal it and rename it to `final`.

    `release` runs the rename, or raises `ArchiveFailure` when the bag must not go out after all
    (the run changed since `snapshot` checked its rows)."""
    staging = staging_for(final.parent, run_id)
    bag_dir = staging / "bag"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        if bag_dir.exists():
            make_writable(bag_dir)  # sealed before a crash that came before the rename
        journal = Journal.load(staging / JOURNAL_NAME, run_id)  # opened last: nothing here fails after it
        if journal is None:
            remove_staging(staging)
            staging.mkdir(parents=True)
            journal = Journal(staging / JOURNAL_NAME, run_id, {})
    except OSError as err:
        raise _discarding(storage_failure(err, f"cannot prepare {staging}"), staging) from None
    try:
        payload = stage_payload(run_dir, bag_dir, inventory, journal, stop, shown)
        snapshot_file = bag_dir / SNAPSHOT_PATH
        snapshot_file.parent.mkdir(parents=True, exist_ok=True)
        snapshot(snapshot_file)
        payload.digests[SNAPSHOT_PATH] = hash_file(snapshot_file)
        payload.digests[EVENTS_PATH] = write_events(bag_dir, events())
        summary = write_tag_files(
            bag_dir,
            run_id=run_id,
            status=status,
            digests=payload.digests,
            links=inventory.links,
            specials=special_lines(inventory),
            now=now,
        )
        seal(bag_dir)
        release(lambda: publish(bag_dir, final))  # the rename alone: the ledger's lock is held meanwhile
        seal_top(final)  # its fsyncs after: a crash before them is what `archive_run` finishes (rename, no seal)
    except ArchiveFailure as failure:
        raise _discarding(failure, staging) from None
    except OSError as err:
        raise _discarding(storage_failure(err, f"building the bag of run {run_id}"), staging) from None
    finally:
        journal.close()
    remove_staging(staging)
    return summary, payload


def _discarding(failure: ArchiveFailure, staging: Path) -> ArchiveFailure:
    """A full disk and a reopened run take the staging with them; other failures keep it for the retry."""
    if failure.reason == "storage_full" or failure.reopened:
        remove_staging(staging)
    return failure
