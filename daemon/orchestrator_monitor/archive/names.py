"""File names as the bag writes them: raw bytes from the file system, text in manifests and tag files.

RFC 8493 manifests are UTF-8 text and percent-encode only `%`, CR and LF. A name that is not
valid UTF-8 cannot appear there at all, so its file is stored under a digest of its raw path
(`data/undecodable/<hex>`) and the raw name is listed, encoded, in `special-files.txt`: its
content is kept and nothing is dropped silently. Tag-file listings use a stricter encoding
(`%`, tab, CR, LF and every undecodable byte as `%XX`), which is reversible and unambiguous.
"""

from __future__ import annotations

import hashlib
import re

UNDECODABLE_DIR = "data/undecodable"
_MANIFEST_ESCAPES = {"%": "%25", "\r": "%0D", "\n": "%0A"}
_LISTING_ESCAPES = {**_MANIFEST_ESCAPES, "\t": "%09"}
_MANIFEST_UNESCAPES = {code: char for char, code in _MANIFEST_ESCAPES.items()}
_MANIFEST_ESCAPED = re.compile("%25|%0[AaDd]")


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def manifest_path(bag_path: str) -> str:
    """A bag-relative path as it is written in a manifest line (RFC 8493 section 2.1.3)."""
    return "".join(_MANIFEST_ESCAPES.get(char, char) for char in bag_path)


def unquote_manifest_path(text: str) -> str:
    """The inverse of `manifest_path`, in one pass (any other `%` is the character itself)."""
    return _MANIFEST_ESCAPED.sub(lambda match: _MANIFEST_UNESCAPES[match.group(0).upper()], text)


def listing_name(raw: bytes) -> str:
    """A raw name for a tag-file listing: readable where it can be, `%XX` where it cannot."""
    out = []
    for char in raw.decode("utf-8", "surrogateescape"):
        if "\udc80" <= char <= "\udcff":
            out.append(f"%{ord(char) - 0xDC00:02X}")
        else:
            out.append(_LISTING_ESCAPES.get(char, char))
    return "".join(out)


def bag_path_for(relative: bytes) -> str:
    """Where the run directory's file `relative` goes in the bag."""
    if is_utf8(relative):
        return "data/run/" + relative.decode("utf-8")
    return f"{UNDECODABLE_DIR}/{hashlib.sha256(relative).hexdigest()}"
