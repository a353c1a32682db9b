"""Fixity check of any bag on disk, as RFC 8493 has it: ours, another tool's, or a damaged one.

Every payload manifest (any algorithm the RFC names; several are each checked, and every payload
file must be in each) and every tag manifest is checked against the files; a payload file no
manifest lists, a listed file that is missing, a bad Payload-Oxum, a malformed `bagit.txt` and a
manifest path that leaves the bag are problems, each naming its file and reason. Whatever the
bytes on disk, the answer is a list of problems, never an exception. Each file is read once
whatever the number of algorithms, and the tree is listed once (its entries' types, not a stat
per file), so an unpaced audit reads about as fast as `sha256sum`. A bag inside `data/` is payload.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .bag import BAG_INFO
from .names import listing_name
from .tagfiles import (
    DECLARATION_FILE,
    DIGEST_LENGTHS,
    TagFileError,
    decode_tag_file,
    manifest_algorithm,
    oxum_problem,
    read_bag_info,
    read_declaration,
    read_manifest,
)

CHUNK_BYTES = 1 << 20  # read at a time (and told to the pace)
Pace = Callable[[int], None]  # told each chunk's size before the next is read: sleeps to hold a rate, or raises
PAYLOAD_PREFIX = "data/"
DEFAULT_ENCODING = "utf-8"  # what the tag files are read as when bagit.txt cannot say
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never a link, never wait on a FIFO


@dataclass
class Verification:
    payload_files: int = 0
    tag_files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Tree:
    """The bag's entries by relative name: regular files, and anything else (links, FIFOs, devices)."""

    files: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)

    def missing(self, path: str) -> str:
        """Why `path` cannot be read as a listed file."""
        if path in self.directories:
            return "a directory, which a manifest may not list"
        return "not a regular file" if path in self.others else "missing"


def verify_bag(bag: Path, pace: Pace | None = None) -> Verification:
    """Check `bag`; each problem names its file and what is wrong with it.

    `pace` (the fixity audit's rate limit) is called after every chunk read, and may raise to stop."""
    result = Verification()
    tree = _list_tree(bag, result)
    encoding = _declared_encoding(bag, tree, result)
    payload = _read_manifests(bag, tree, "manifest-", encoding, result)
    tags = _read_manifests(bag, tree, "tagmanifest-", encoding, result)
    if not payload:
        result.problems.append("no payload manifest (manifest-<algorithm>.txt)")
    if "data" not in tree.directories:
        result.problems.append("data/: missing (the payload directory)")
    _check_places(payload, tags, result)
    payload_files = {path for path in tree.files | tree.others if path.startswith(PAYLOAD_PREFIX)}
    _check_every_file_listed(payload, payload_files, result)
    listed_payload = {path for entries in payload.values() for path in entries}
    listed_tags = {path for entries in tags.values() for path in entries}
    result.payload_files, result.tag_files = len(listed_payload), len(listed_tags)
    sizes = _check_digests(bag, tree, {**payload, **tags}, result, pace)
    if payload:  # without one, the payload's size is unknown
        _check_oxum(bag, tree, encoding, listed_payload, sizes, result)
    return result


def _list_tree(bag: Path, result: Verification) -> _Tree:
    """Every entry under the bag, walked without following links (a name that is not UTF-8 shown %-encoded)."""
    tree = _Tree()
    pending = [(os.fsencode(bag), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    relative = prefix + _text_name(entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        tree.directories.add(relative)
                        pending.append((entry.path, relative + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        tree.files.add(relative)
                    else:
                        tree.others.add(relative)
        except OSError as err:
            result.problems.append(f"{prefix or '.'}: cannot list it: {err.strerror}")
    return tree


def _text_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return listing_name(raw)


def _declared_encoding(bag: Path, tree: _Tree, result: Verification) -> str:
    """The tag files' encoding from `bagit.txt` (a bad or missing one is a problem; UTF-8 is assumed to go on)."""
    raw = _read_tag_file(bag, tree, DECLARATION_FILE, result)
    if raw is None:
        return DEFAULT_ENCODING
    try:
        return read_declaration(raw).encoding
    except TagFileError as err:
        result.problems.append(f"{DECLARATION_FILE}: {err}")
        return DEFAULT_ENCODING


def _read_tag_file(bag: Path, tree: _Tree, name: str, result: Verification) -> bytes | None:
    if name not in tree.files:
        result.problems.append(f"{name}: {tree.missing(name)}")
        return None
    try:
        fd = os.open(bag / name, _OPEN_FLAGS)
    except OSError as err:
        result.problems.append(f"{name}: cannot read it: {err.strerror}")
        return None
    with open(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as err:
            result.problems.append(f"{name}: cannot read it: {err.strerror}")
            return None


def _read_manifests(
    bag: Path, tree: _Tree, prefix: str, encoding: str, result: Verification
) -> dict[str, dict[str, str]]:
    """Each manifest of this kind at the bag's top, by file name: its entries (path to digest)."""
    manifests = {}
    for name in sorted(tree.files | tree.others):
        algorithm = manifest_algorithm(name, prefix)
        if algorithm is None:
            continue
        if algorithm not in DIGEST_LENGTHS:
            result.problems.append(f"{name}: algorithm {algorithm!r} is none of {', '.join(DIGEST_LENGTHS)}")
            continue
        raw = _read_tag_file(bag, tree, name, result)
        if raw is None:
            continue
        try:
            manifest = read_manifest(decode_tag_file(raw, encoding), algorithm)
        except TagFileError as err:
            result.problems.append(f"{name}: {err}")
            continue
        result.problems.extend(f"{name} {problem}" for problem in manifest.problems)
        manifests[name] = manifest.entries
    return manifests


def _check_places(payload: dict[str, dict[str, str]], tags: dict[str, dict[str, str]], result: Verification) -> None:
    """Payload manifests list only files under data/, tag manifests only files outside it."""
    for name, entries in payload.items():
        for path in entries:
            if not path.startswith(PAYLOAD_PREFIX):
                result.problems.append(f"{name}: lists {path}, which is not under data/")
    for name, entries in tags.items():
        for path in entries:
            if path.startswith(PAYLOAD_PREFIX):
                result.problems.append(f"{name}: lists {path}, a payload file")


def _check_every_file_listed(payload: dict[str, dict[str, str]], files: set[str], result: Verification) -> None:
    """Every payload file is in every payload manifest (RFC 8493 section 2.1.3)."""
    if not payload:
        return
    for path in sorted(files):
        lacking = [name for name, entries in payload.items() if path not in entries]
        if len(lacking) == len(payload):
            result.problems.append(f"{path}: extra file, not in {', '.join(lacking)}")
        elif lacking:
            result.problems.append(f"{path}: not in {', '.join(lacking)} (every payload file must be in each manifest)")


def _check_digests(
    bag: Path, tree: _Tree, manifests: dict[str, dict[str, str]], result: Verification, pace: Pace | None
) -> dict[str, int]:
    """Read each listed file once, hashing it with every algorithm that lists it; its size, by path."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for name, entries in manifests.items():
        for path, digest in entries.items():
            wanted.setdefault(path, []).append((name, digest))
    sizes = {}
    for path, expected in sorted(wanted.items()):
        if path not in tree.files:
            result.problems.append(f"{path}: {tree.missing(path)}")
            continue
        algorithms = sorted({_algorithm(name) for name, _ in expected})
        try:
            actual, sizes[path] = _hash_file(bag / path, algorithms, pace)
        except OSError as err:
            result.problems.append(f"{path}: cannot read it: {err.strerror or err}")
            continue
        for name, digest in expected:
            found = actual[_algorithm(name)]
            if found != digest:
                result.problems.append(f"{path}: checksum mismatch ({name} {digest}, file {found})")
    return sizes


def _algorithm(manifest: str) -> str:
    """`sha512` of `manifest-sha512.txt` or `tagmanifest-sha512.txt`."""
    return manifest.partition("-")[2].removesuffix(".txt")


def _hash_file(path: Path, algorithms: list[str], pace: Pace | None) -> tuple[dict[str, str], int]:
    """The file's hex digest by algorithm, and its size: one pass, `CHUNK_BYTES` at a time."""
    fd = os.open(path, _OPEN_FLAGS)
    with open(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the listing
            raise OSError(0, "not a regular file")
        hashers = [hashlib.new(algorithm) for algorithm in algorithms]
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        size = 0
        while count := handle.readinto(buffer):
            for hasher in hashers:
                hasher.update(view[:count])
            size += count
            if pace is not None:
                pace(count)
    return {algorithm: hasher.hexdigest() for algorithm, hasher in zip(algorithms, hashers, strict=True)}, size


def _check_oxum(
    bag: Path, tree: _Tree, encoding: str, payload: set[str], sizes: dict[str, int], result: Verification
) -> None:
    """Payload-Oxum, when the bag has a bag-info.txt with one: the payload's bytes and files as read."""
    if BAG_INFO not in tree.files | tree.others:
        return
    raw = _read_tag_file(bag, tree, BAG_INFO, result)
    if raw is None:
        return
    try:
        elements, problems = read_bag_info(decode_tag_file(raw, encoding))
    except TagFileError as err:
        result.problems.append(f"{BAG_INFO}: {err}")
        return
    result.problems.extend(f"{BAG_INFO} {problem}" for problem in problems)
    present = [path for path in payload if path in sizes]
    problem = oxum_problem(elements, sum(sizes[path] for path in present), len(present))
    if problem is not None:
        result.problems.append(f"{BAG_INFO}: {problem}")
