"""RFC 8493's tag files read as the RFC writes them: the bag declaration, manifests and `bag-info.txt`.

Pure (bytes or text in, entries and named problems out), so that a verifier meeting a bag some
other tool wrote, or a damaged one, answers with a reason and never raises. The rules kept:
`bagit.txt` is exactly two elements, UTF-8 without a byte-order mark; the other tag files are in
the encoding it declares; an element is `Label`, a colon, one space or tab, the value; a line
ends at CR, LF or CRLF (only those: a form feed or U+2028 may be part of a file name); a manifest
line is a hex digest, linear whitespace, and a `/`-separated path relative to the bag, in which
only `%`, CR and LF are percent-encoded.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from .names import unquote_manifest_path

DECLARATION_FILE = "bagit.txt"
# The algorithms RFC 8493 names (section 2.4, and md5/sha1 for bags made before it), by the name a
# manifest's file name carries, with the length of their hex digest.
DIGEST_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
# 1.0 is RFC 8493; the 0.9x drafts differ from it in nothing this verifier checks, and bagit-python writes 0.97.
VERSIONS = ("0.93", "0.94", "0.95", "0.96", "0.97", "1.0")
DECLARATION_LABELS = ("BagIt-Version", "Tag-File-Character-Encoding")
_LINE_END = re.compile(r"\r\n|\r|\n")
_MANIFEST_LINE = re.compile(r"([^ \t]+)[ \t]+(.*)", re.DOTALL)
_VERSION = re.compile(r"[0-9]+\.[0-9]+")
_OXUM = re.compile(r"([0-9]+)\.([0-9]+)")


class TagFileError(Exception):
    """A tag file that breaks the RFC; the message says how."""


@dataclass(frozen=True, slots=True)
class Declaration:
    version: str
    encoding: str  # the declared name, known to Python's codecs


@dataclass
class Manifest:
    """A manifest's entries (bag-relative path to lower-case hex digest) and what was wrong in it."""

    entries: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def manifest_algorithm(name: str, prefix: str) -> str | None:
    """`sha512` for `manifest-sha512.txt` (prefix `manifest-`); None for a file that is no such manifest."""
    if name.startswith(prefix) and name.endswith(".txt") and "/" not in name:
        return name[len(prefix) : -len(".txt")]
    return None


def split_lines(text: str) -> list[str]:
    """The lines of a tag file, each ended by CR, LF or CRLF; the last line's end is optional."""
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def read_element(line: str) -> tuple[str, str]:
    """`Label: value` (a colon, then one space or tab); `TagFileError` for anything else."""
    label, colon, value = line.partition(":")
    if not colon or not label or label != label.strip(" \t") or (value and value[0] not in " \t"):
        raise TagFileError(f"{line!r} is not 'Label: value' (a colon, then one space)")
    return label, value[1:]


def read_declaration(raw: bytes) -> Declaration:
    """`bagit.txt`: exactly `BagIt-Version: M.N` then `Tag-File-Character-Encoding: ENCODING`."""
    if raw.startswith(codecs.BOM_UTF8):
        raise TagFileError("starts with a byte-order mark, which RFC 8493 forbids")
    try:
        lines = split_lines(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TagFileError("not UTF-8") from None
    if len(lines) != len(DECLARATION_LABELS):
        raise TagFileError(f"{len(lines)} lines, not the 2 of 'BagIt-Version: M.N' and 'Tag-File-Character-Encoding'")
    values = []
    for number, (line, wanted) in enumerate(zip(lines, DECLARATION_LABELS, strict=True), 1):
        try:
            label, value = read_element(line)
        except TagFileError as err:
            raise TagFileError(f"line {number}: {err}") from None
        if label != wanted:
            raise TagFileError(f"line {number}: {label!r} where RFC 8493 puts {wanted!r}")
        values.append(value)
    version, encoding = values
    if not _VERSION.fullmatch(version):
        raise TagFileError(f"BagIt-Version {version!r} is not M.N")
    if version not in VERSIONS:
        raise TagFileError(f"BagIt-Version {version} is not one this verifier knows ({', '.join(VERSIONS)})")
    if not is_text_encoding(encoding):
        raise TagFileError(f"Tag-File-Character-Encoding {encoding!r} is not a known character encoding")
    return Declaration(version, encoding)


def is_text_encoding(name: str) -> bool:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return False
    return bool(getattr(info, "_is_text_encoding", True))  # what `bytes.decode` checks: rot13 or zlib are no text


def decode_tag_file(raw: bytes, encoding: str) -> str:
    """A tag file's text in the declared encoding (a leading byte-order mark dropped); `TagFileError` if it is not."""
    try:
        text = raw.decode(encoding)
    except (UnicodeError, ValueError):
        raise TagFileError(f"not {encoding}, the encoding bagit.txt declares") from None
    return text.removeprefix("\ufeff")


def read_manifest(text: str, algorithm: str) -> Manifest:
    """Each line `digest path`; a bad line, a path out of the bag, a path listed twice with two digests: problems."""
    manifest = Manifest()
    length = DIGEST_LENGTHS[algorithm]
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip(" \t"):
            continue
        match = _MANIFEST_LINE.fullmatch(line)
        digest = match.group(1).lower() if match else ""
        if not match or len(digest) != length or not _is_hex(digest):
            manifest.problems.append(f"line {number}: not '<{algorithm} digest> <path>'")
            continue
        try:
            path = bag_relative(unquote_manifest_path(match.group(2)))
        except TagFileError as err:
            manifest.problems.append(f"line {number}: {err}")
            continue
        earlier = manifest.entries.setdefault(path, digest)
        if earlier != digest:
            manifest.problems.append(f"line {number}: {path} listed twice with different digests")
    return manifest


def bag_relative(path: str) -> str:
    """`path` as the bag's own relative name (`./` and empty steps dropped); `TagFileError` if it leaves the bag."""
    if path.startswith("/"):
        raise TagFileError(f"{path!r} is an absolute path, outside the bag")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise TagFileError(f"{path!r} climbs out with '..'")
    if not parts:
        raise TagFileError(f"{path!r} names no file")
    return "/".join(parts)


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)


def read_bag_info(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The elements of `bag-info.txt` in order (an indented line continues the value above) and its bad lines."""
    elements: list[tuple[str, str]] = []
    problems = []
    for number, line in enumerate(split_lines(text), 1):
        if line[:1] in (" ", "\t") and elements:
            label, value = elements[-1]
            elements[-1] = (label, value + " " + line.strip(" \t"))
            continue
        try:
            elements.append(read_element(line))
        except TagFileError as err:
            problems.append(f"line {number}: {err}")
    return elements, problems


def oxum_problem(elements: list[tuple[str, str]], payload_bytes: int, payload_files: int) -> str | None:
    """What is wrong with the bag's Payload-Oxum (`bytes.files` of the payload), if it has one."""
    values = [value for label, value in elements if label == "Payload-Oxum"]
    if not values:
        return None
    if len(values) > 1:
        return f"Payload-Oxum given {len(values)} times"
    match = _OXUM.fullmatch(values[0])
    if not match:
        return f"Payload-Oxum {values[0]!r} is not '<bytes>.<files>'"
    if (int(match.group(1)), int(match.group(2))) != (payload_bytes, payload_files):
        return f"Payload-Oxum {values[0]} but the payload is {payload_bytes}.{payload_files}"
    return None
