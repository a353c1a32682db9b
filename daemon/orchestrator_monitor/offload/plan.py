"""What a bag consists of, as its manifests say: every payload and tag file with its SHA-256, and the
tag manifest itself (hashed here: nothing lists it). The digests come from the manifests, never from
the files, so a file damaged since it was bagged is refused, not copied."""

from __future__ import annotations

import os
from pathlib import Path

from ..archive.bag import MANIFEST, TAG_MANIFEST, hash_file
from ..archive.names import unquote_manifest_path
from .choose import BagFile
from .targets import TargetError


def bag_files(bag: Path) -> list[BagFile]:
    """Every file of the published bag `bag`; `TargetError` ("unreadable") when a manifest cannot be read."""
    listed = {**_manifest(bag, MANIFEST), **_manifest(bag, TAG_MANIFEST)}
    files = []
    for path, digest in sorted(listed.items()):
        if ".." in Path(path).parts or Path(path).is_absolute():
            raise TargetError("unreadable", f"{bag}: {path}: a path that leaves the bag")
        try:
            files.append(BagFile(path, digest, os.lstat(bag / path).st_size))
        except OSError as err:
            raise TargetError("unreadable", f"{bag / path}: {err.strerror}") from None
    try:
        digest, size = hash_file(bag / TAG_MANIFEST)
    except OSError as err:
        raise TargetError("unreadable", f"{bag / TAG_MANIFEST}: {err.strerror}") from None
    return [*files, BagFile(TAG_MANIFEST, digest, size)]


def _manifest(bag: Path, name: str) -> dict[str, str]:
    try:
        text = (bag / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TargetError("unreadable", f"{bag / name}: {getattr(err, 'strerror', None) or err}") from None
    entries = {}
    for number, line in enumerate(text.removesuffix("\n").split("\n"), 1):
        digest, separator, path = line.partition(" ")
        path = path.removeprefix(" ") if separator else ""
        if len(digest) != 64 or not path:
            raise TargetError("unreadable", f"{bag / name} line {number}: not 'sha256 path'")
        entries[unquote_manifest_path(path)] = digest.lower()
    return entries
