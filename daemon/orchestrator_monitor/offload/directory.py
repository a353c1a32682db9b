"""A directory target (an NFS or USB mount): each file copied under a temporary name, synced, re-read
and hashed against the manifest, then renamed into `<path>/<run id>/`; a reader never meets a torn file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..durable import sync_directory
from .choose import BagFile
from .pacing import CHUNK_BYTES, TokenBucket
from .targets import TargetError, Uploads

PARTIAL = ".offload-partial"  # the temporary name's end: cleared before a bag is sent again


class DirectoryTarget:
    kind = "directory"

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self._root = root

    @property
    def base(self) -> str:
        return str(self._root)

    def location(self, run_id: str) -> str:
        return str(self._root / run_id)

    def prepare(self, run_id: str) -> None:
        if not self._root.is_dir():  # an unmounted mount point is not a place to create one
            raise TargetError("unreachable", f"{self._root}: not a directory (is it mounted?)")
        for dirpath, _, names in os.walk(self._root / run_id):
            for name in names:
                if name.endswith(PARTIAL):
                    os.unlink(os.path.join(dirpath, name))

    def send(self, run_id: str, file: BagFile, bag: Path, bucket: TokenBucket, uploads: Uploads) -> str:
        final = self._root / run_id / file.path
        partial = final.with_name(f".{final.name}{PARTIAL}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            copied = _copy(bag / file.path, partial, bucket)
            if copied != file.sha256:
                partial.unlink()
                raise TargetError("local_mismatch", f"{file.path}: the local file no longer matches the manifest")
            landed = _hash(partial)  # what the target holds now, read back
            if landed != file.sha256:
                partial.unlink()
                raise TargetError("copy_mismatch", f"{final}: the copy does not match the manifest")
            os.replace(partial, final)
            sync_directory(final.parent)
        except OSError as err:
            raise TargetError("io", f"{final}: {err.strerror}") from None
        return file.sha256

    def listing(self, run_id: str) -> set[str]:
        top = self._root / run_id
        return {
            os.path.relpath(os.path.join(dirpath, name), top)
            for dirpath, _, names in os.walk(top)
            for name in names
            if not name.endswith(PARTIAL)
        }

    def problem(self, run_id: str, path: str, sha256: str, remote_checksum: str) -> str | None:
        try:
            actual = _hash(self._root / run_id / path)
        except FileNotFoundError:
            return "missing"
        except OSError as err:
            return f"unreadable: {err.strerror}"
        return None if actual == sha256 else f"checksum mismatch (manifest {sha256}, copy {actual})"

    def close(self) -> None:
        return None


def _copy(source: Path, partial: Path, bucket: TokenBucket) -> str:
    """Copy `source` to `partial` (synced), taking each chunk from the bucket; the digest of what was read."""
    digest = hashlib.sha256()
    with source.open("rb") as reader, partial.open("wb") as writer:
        while chunk := reader.read(CHUNK_BYTES):
            bucket.take(len(chunk))
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _hash(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
