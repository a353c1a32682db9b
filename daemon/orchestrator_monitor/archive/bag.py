"""The bag's tag files, the durable read-only publication, and what a published bag says of itself.

Publication is the one step others can see: every file and directory of the staged bag but
its top directory is durable and read-only first, then one `rename` into
`<archive root>/<run_id>`, the top made read-only and durable at once, and an fsync of the
archive root, so a reader finds no bag or the whole bag. The top stays writable until after
the rename because Linux refuses to move a directory one may not write to a new parent (its
`..` changes): without CAP_DAC_OVERRIDE a sealed top could never be published.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import __version__
from ..durable import sync_directory, write_durably
from ..events.types import Event, encode_event
from ..timefmt import format_timestamp
from .names import listing_name, manifest_path

MANIFEST = "manifest-sha256.txt"
TAG_MANIFEST = "tagmanifest-sha256.txt"
BAG_INFO = "bag-info.txt"
LINKS = "links.txt"
SPECIALS = "special-files.txt"
EVENTS_PATH = "data/logs/events.jsonl"
SNAPSHOT_PATH = "data/state/run.sqlite3"
BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


@dataclass(frozen=True, slots=True)
class BagSummary:
    files: int
    bytes: int
    manifest_sha256: str


def hash_file(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.hexdigest(), handle.tell()


def write_events(bag_dir: Path, events: Iterable[Event]) -> tuple[str, int]:
    """`data/logs/events.jsonl`: the run's events as the log holds them, one line each, in `seq` order."""
    data = b"".join(encode_event(event) for event in sorted(events, key=lambda e: e.seq))
    write_durably(bag_dir / EVENTS_PATH, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def write_tag_files(
    bag_dir: Path,
    *,
    run_id: str,
    status: str,
    digests: dict[str, tuple[str, int]],
    links: list[tuple[bytes, bytes]],
    specials: list[str],
    now: datetime,
) -> BagSummary:
    """bagit.txt, the manifest, bag-info.txt, links.txt, special-files.txt and the tag manifest."""
    manifest = "".join(f"{digests[p][0]}  {manifest_path(p)}\n" for p in sorted(digests)).encode()
    oxum_bytes = sum(size for _, size in digests.values())
    info = (
        f"Bag-Software-Agent: orchestrator-monitor {__version__}\n"
        f"Bagging-Date: {now.date().isoformat()}\n"
        f"Bagging-Time: {format_timestamp(now)}\n"
        f"Payload-Oxum: {oxum_bytes}.{len(digests)}\n"
        f"Run-Id: {run_id}\n"
        f"Run-Status: {status}\n"
    )
    link_lines = "".join(f"data/run/{listing_name(p)}\t{listing_name(t)}\n" for p, t in sorted(links))
    tags = {
        "bagit.txt": BAGIT_TXT.encode(),
        MANIFEST: manifest,
        BAG_INFO: info.encode(),
        LINKS: link_lines.encode(),
        SPECIALS: "".join(f"{line}\n" for line in specials).encode(),
    }
    for name, data in tags.items():
        write_durably(bag_dir / name, data)
    tag_manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(tags.items()))
    write_durably(bag_dir / TAG_MANIFEST, tag_manifest.encode())
    return BagSummary(len(digests), oxum_bytes, hashlib.sha256(manifest).hexdigest())


def seal(bag_dir: Path) -> None:
    """Make every file and directory but the top read-only and every directory durable (files already are)."""
    top = os.fsencode(bag_dir)
    for dirpath, _, filenames, dirfd in os.fwalk(top, follow_symlinks=False, topdown=False):
        for name in filenames:  # the staged bag holds only our regular files and directories
            os.chmod(name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH, dir_fd=dirfd)
        os.fsync(dirfd)
        if dirpath != top:  # the top is sealed by `publish`, after the rename
            os.fchmod(dirfd, 0o555)


def publish(bag_dir: Path, final: Path) -> None:
    """Rename the sealed bag into place, never over an existing one (`seal_top` then makes it durable)."""
    if final.exists():
        raise FileExistsError(f"{final} exists: an archive is never overwritten")
    os.rename(bag_dir, final)


def seal_top(final: Path) -> None:
    """Make a published bag's top directory read-only, durably (also what a crash right after the rename left)."""
    fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o555)
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_directory(final.parent)


def read_summary(final: Path) -> BagSummary:
    """Files, bytes (from Payload-Oxum) and the manifest digest of a published bag."""
    size, count = read_payload_oxum(final)
    digest, _ = hash_file(final / MANIFEST)
    return BagSummary(count, size, digest)


def read_payload_oxum(final: Path) -> tuple[int, int]:
    """Payload bytes and files of a published bag, from its `bag-info.txt` alone (no payload read)."""
    oxum = "0.0"
    for line in (final / BAG_INFO).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Payload-Oxum":
            oxum = value.strip()
    size, _, count = oxum.partition(".")
    return int(size), int(count)


def make_writable(path: Path) -> None:
    """Undo `seal` on a staging tree to be resumed or removed (never on a published bag)."""
    os.chmod(path, 0o755)
    for _, dirnames, filenames, dirfd in os.fwalk(os.fsencode(path), follow_symlinks=False):
        for name in dirnames:
            os.chmod(name, 0o755, dir_fd=dirfd)
        for name in filenames:
            os.chmod(name, 0o644, dir_fd=dirfd)
