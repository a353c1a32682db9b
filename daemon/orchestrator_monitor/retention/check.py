"""A run directory compared with its bag, file by file, as it is now: what may go, what differs, what stays.

Each regular file is opened beneath the directory without following a link (archive/tree.py),
hashed, and compared with the digest the bag's manifest gives its copy (`data/run/...`, or
`data/undecodable/...` for a name that is not UTF-8); the caller has just re-verified the bag
itself, so that digest is the copy's. A symbolic link may go when `links.txt` lists it with the
same target. A file that differs from its copy holds the whole directory; a file, link, FIFO or
device the bag does not have stays where it is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..archive.bag import LINKS, MANIFEST
from ..archive.names import bag_path_for, listing_name, unquote_manifest_path
from ..archive.tree import RunDir, open_beneath, open_root, scan_tree

DIGEST_LENGTH = 64


@dataclass
class DirCheck:
    """The verdict on one run directory."""

    in_bag: list[bytes] = field(default_factory=list)  # files and links identical to the bag's: may go
    size: int = 0  # bytes of the files in `in_bag`
    changed: list[str] = field(default_factory=list)  # files that differ from their copy (shown names)
    kept: list[bytes] = field(default_factory=list)  # not in the bag: they stay


def manifest_digests(bag: Path) -> dict[str, str]:
    """Bag path -> SHA-256 from `manifest-sha256.txt` (the bag was just verified: its lines are sound)."""
    digests = {}
    for line in (bag / MANIFEST).read_text(encoding="utf-8").removesuffix("\n").split("\n"):
        digest, path = line[:DIGEST_LENGTH], line[DIGEST_LENGTH:].lstrip(" \t")
        if path:
            digests[unquote_manifest_path(path)] = digest.lower()
    return digests


def check_run_dir(bag: Path, directory: RunDir) -> DirCheck:
    """Compare every entry of `directory` with `bag`; `ArchiveFailure` when the directory cannot be read."""
    digests = manifest_digests(bag)
    links = set((bag / LINKS).read_text(encoding="utf-8").splitlines())
    inventory = scan_tree(directory)
    result = DirCheck()
    root_fd = open_root(directory)
    try:
        for entry in inventory.files:
            expected = digests.get(bag_path_for(entry.relative))
            if expected is None:
                result.kept.append(entry.relative)
            elif _digest(root_fd, entry.relative) == expected:
                result.in_bag.append(entry.relative)
                result.size += entry.size
            else:
                result.changed.append(listing_name(entry.relative))
    finally:
        os.close(root_fd)
    for relative, target in inventory.links:
        listed = f"data/run/{listing_name(relative)}\t{listing_name(target)}" in links
        (result.in_bag if listed else result.kept).append(relative)
    result.kept.extend(relative for relative, _ in inventory.specials)
    return result


def _digest(root_fd: int, relative: bytes) -> str:
    fd = open_beneath(root_fd, relative)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
