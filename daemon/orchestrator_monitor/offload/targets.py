"""What every offload target offers the pass and the remote check, and how it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .choose import BagFile
from .pacing import TokenBucket


class TargetError(Exception):
    """A bag (or file) not confirmed at a target: `reason` a short word for events and health, `detail`
    one line without a secret in it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Uploads(Protocol):
    """The journal's multipart uploads of one bag at one target (a killed one is resumed, not restarted)."""

    def find(self, path: str) -> str | None: ...
    def started(self, path: str, upload_id: str) -> None: ...
    def ended(self, path: str) -> None: ...


class Target(Protocol):
    name: str
    kind: str  # the catalog's location kind: s3 | directory

    @property
    def base(self) -> str:
        """Where every bag of this target is below (`s3://bucket/prefix`, a directory)."""

    def location(self, run_id: str) -> str: ...

    def prepare(self, run_id: str) -> None:
        """Before a bag is sent: clear what a killed earlier attempt left half-written."""

    def send(self, run_id: str, file: BagFile, bag: Path, bucket: TokenBucket, uploads: Uploads) -> str:
        """Copy one file; return the checksum the target keeps for it, once it has confirmed the
        manifest's digest. `TargetError` when it cannot; `OffloadStopped` when the daemon stops."""

    def listing(self, run_id: str) -> set[str]:
        """The paths the target holds for the bag."""

    def problem(self, run_id: str, path: str, sha256: str, remote_checksum: str) -> str | None:
        """Whether the target's copy of `path` still has the digest confirmed when it was sent."""

    def close(self) -> None: ...
