"""Fixity check of a published bag: every payload and tag file against its manifest, nothing extra.

Independent of how the bag was written: it reads the manifests as RFC 8493 says (percent-
encoded `%`, CR, LF), so names the PyPI validator mishandles are checked here too.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .bag import BAG_INFO, MANIFEST, TAG_MANIFEST
from .names import listing_name, unquote_manifest_path

CHUNK_BYTES = 1 << 20  # read at a time when paced
Pace = Callable[[int], None]  # told each chunk's size before the next is read: sleeps to hold a rate, or raises


@dataclass
class Verification:
    payload_files: int = 0
    tag_files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bag(bag: Path, pace: Pace | None = None) -> Verification:
    """Check `bag`; each problem names its file (mismatch, missing, extra, bad Payload-Oxum).

    `pace` (the fixity audit's rate limit) is called after every chunk read."""
    result = Verification()
    if not (bag / "bagit.txt").is_file():
        result.problems.append("bagit.txt: missing")
    payload = _read_manifest(bag, MANIFEST, result)
    tags = _read_manifest(bag, TAG_MANIFEST, result)
    result.payload_files, result.tag_files = len(payload), len(tags)
    for relative, expected in sorted({**payload, **tags}.items()):
        _check_file(bag, relative, expected, result, pace)
    for relative in _files_under(bag):
        in_data = relative.startswith("data/")
        listed = relative in payload if in_data else relative in tags or relative.startswith("tagmanifest-")
        if not listed:
            result.problems.append(f"{relative}: extra file, not in {MANIFEST if in_data else TAG_MANIFEST}")
    _check_oxum(bag, payload, result)
    return result


def _read_manifest(bag: Path, name: str, result: Verification) -> dict[str, str]:
    try:
        text = (bag / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        result.problems.append(f"{name}: missing")
        return {}
    entries = {}
    # Only LF ends a line (CR and LF in a path are percent-encoded; `splitlines` would also split at
    # a form feed or U+2028 that a file name may hold), and a path keeps its own leading and trailing
    # spaces: after the digest comes one separator, two spaces as written here, else one space or tab.
    for number, line in enumerate(text.removesuffix("\n").split("\n"), 1):
        line = line.removesuffix("\r")
        digest, separator = line[:64], line[64:66]
        path = line[66:] if separator == "  " else line[65:] if separator[:1] in (" ", "\t") else ""
        if not path or len(digest) != 64 or " " in digest:
            result.problems.append(f"{name} line {number}: not 'sha256 path'")
            continue
        entries[unquote_manifest_path(path)] = digest.lower()
    return entries


def _check_file(bag: Path, relative: str, expected: str, result: Verification, pace: Pace | None) -> None:
    path = bag / relative
    if ".." in Path(relative).parts or Path(relative).is_absolute():
        result.problems.append(f"{relative}: path leaves the bag")
        return
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        result.problems.append(f"{relative}: missing")
        return
    if not stat.S_ISREG(info.st_mode):
        result.problems.append(f"{relative}: not a regular file")
        return
    with path.open("rb") as handle:
        actual = hashlib.file_digest(handle, "sha256").hexdigest() if pace is None else _paced(handle, pace)
    if actual != expected:
        result.problems.append(f"{relative}: checksum mismatch (manifest {expected}, file {actual})")


def _paced(handle: BinaryIO, pace: Pace) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK_BYTES):
        digest.update(chunk)
        pace(len(chunk))
    return digest.hexdigest()


def _files_under(bag: Path) -> list[str]:
    """Every non-directory under the bag, relative, as text (an undecodable name shown %-encoded)."""
    found = []
    root = os.fsencode(bag)
    for dirpath, dirnames, filenames in os.walk(root):
        prefix = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            raw = name if prefix == b"." else prefix + b"/" + name
            try:
                found.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                found.append(listing_name(raw))
    return found


def _check_oxum(bag: Path, payload: dict[str, str], result: Verification) -> None:
    try:
        info = (bag / BAG_INFO).read_text(encoding="utf-8")
    except FileNotFoundError:
        result.problems.append(f"{BAG_INFO}: missing")
        return
    oxum = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Payload-Oxum:")), None)
    if oxum is None:
        result.problems.append(f"{BAG_INFO}: no Payload-Oxum")
        return
    size = 0
    for relative in payload:
        try:
            size += os.lstat(bag / relative).st_size
        except FileNotFoundError:
            continue
    if oxum != f"{size}.{len(payload)}":
        result.problems.append(f"{BAG_INFO}: Payload-Oxum {oxum} but the payload is {size}.{len(payload)}")
