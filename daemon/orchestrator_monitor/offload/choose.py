"""The pure choices of offload: which bags a pass sends, in which order a bag's files go, until when
an object is locked. Plain data in, plain data out: no clock, no database, no network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from ..archive.bag import TAG_MANIFEST

CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class BagFile:
    """One file of a bag: its path in the bag, the SHA-256 (hex) its manifest gives, its size."""

    path: str
    sha256: str
    size: int


class Candidate(Protocol):
    @property
    def run_id(self) -> str: ...
    @property
    def archived_at(self) -> str: ...
    @property
    def verify_result(self) -> str | None: ...


C = TypeVar("C", bound=Candidate)


def bags_to_send(candidates: Sequence[C], limit: int) -> list[C]:
    """The oldest bags first, at most `limit`; a bag the audit found corrupt is never sent (it would
    carry the damage elsewhere, and the server would refuse its files anyway)."""
    sound = [c for c in candidates if c.verify_result != CORRUPT]
    return sorted(sound, key=lambda c: (c.archived_at, c.run_id))[:limit]


def upload_stages(files: Sequence[BagFile]) -> list[list[BagFile]]:
    """The payload, then the tag files, then the tag manifest alone: a remote bag without its tag
    manifest is visibly incomplete, and one with it has every other file."""
    payload = sorted((f for f in files if f.path.startswith("data/")), key=lambda f: f.path)
    tags = sorted((f for f in files if not f.path.startswith("data/") and f.path != TAG_MANIFEST), key=lambda f: f.path)
    last = [f for f in files if f.path == TAG_MANIFEST]
    return [stage for stage in (payload, tags, last) if stage]


def retain_until(now: datetime, days: int | None) -> datetime | None:
    """The Object Lock retain-until date of an object sent at `now` (None: no lock)."""
    return None if days is None else now + timedelta(days=days)
