"""An S3-compatible target (AWS S3, MinIO, Ceph...), through boto3 (the optional extra `s3`).

Every file goes with `ChecksumAlgorithm=SHA256` and the SHA-256 its manifest gives, so the server
refuses bytes that differ from the bag's (S3 checks the header against what it receives); the file is
also hashed as it is read, and a file that no longer matches its manifest is never sent. A file of
`multipart_bytes` or more goes in parts, each with its own SHA-256; the parts' upload id is journalled,
so after a kill -9 the parts already there are kept and the rest sent, or a stray upload aborted. With
Object Lock configured, each object is locked (GOVERNANCE or COMPLIANCE) until its retain-until date.
The keys are `<prefix>/<run id>/<path in the bag>`. No message carries a credential.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ..config import OffloadTarget, hide_passwords
from .choose import BagFile, retain_until
from .pacing import TokenBucket, read_paced
from .targets import TargetError, Uploads

REFUSED_CHECKSUM = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"})
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _plain(checksum: str) -> str:
    """A composite checksum without its `-<parts>` (servers differ in whether they add it)."""
    return checksum.partition("-")[0]


class S3Target:
    kind = "s3"

    def __init__(
        self,
        config: OffloadTarget,
        *,
        parallel: int,
        multipart_bytes: int,
        clock: Callable[[], datetime],
    ) -> None:
        assert config.bucket is not None
        self.name = config.name
        self._bucket = config.bucket
        self._prefix = config.prefix
        self._part = multipart_bytes
        self._lock_mode = config.object_lock_mode
        self._lock_days = config.object_lock_days
        self._clock = clock
        for library in ("botocore", "boto3", "s3transfer", "urllib3"):  # their debug lines carry signed headers
            logging.getLogger(library).setLevel(logging.WARNING)
        core = botocore.session.Session(profile=config.profile)
        if config.credentials_file is not None:  # an AWS credentials file; else the standard chain
            core.set_config_variable("credentials_file", str(config.credentials_file))
        self._session = boto3.Session(botocore_session=core, region_name=config.region)
        settings = Config(
            max_pool_connections=parallel + 2,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=120,
            request_checksum_calculation="when_required",  # the manifest's SHA-256 is given: no CRC beside it
            response_checksum_validation="when_required",
        )
        try:
            self._client: Any = self._session.client("s3", endpoint_url=config.endpoint_url, config=settings)
        except BotoCoreError as err:
            raise TargetError("configuration", self._without_secrets(str(err))) from None

    @property
    def base(self) -> str:
        return f"s3://{self._bucket}" + (f"/{self._prefix}" if self._prefix else "")

    def location(self, run_id: str) -> str:
        return f"{self.base}/{run_id}"

    def _key(self, run_id: str, path: str) -> str:
        return f"{self._prefix}/{run_id}/{path}" if self._prefix else f"{run_id}/{path}"

    def prepare(self, run_id: str) -> None:
        return None  # a stray multipart upload is found per file (`_multipart`)

    def send(self, run_id: str, file: BagFile, bag: Path, bucket: TokenBucket, uploads: Uploads) -> str:
        key = self._key(run_id, file.path)
        lock = self._lock()
        try:
            if file.size >= self._part:
                return self._multipart(key, file, bag, bucket, uploads, lock)
            data = read_paced(bag / file.path, 0, file.size + 1, bucket)
            _check_local(file, hashlib.sha256(data).hexdigest())
            answer = self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=b64(file.sha256),
                **lock,
            )
            return self._confirmed(key, b64(file.sha256), answer.get("ChecksumSHA256"))
        except OSError as err:
            raise TargetError("unreadable", f"{bag / file.path}: {err.strerror}") from None
        except (ClientError, BotoCoreError) as err:
            raise self._failure(err, key) from None

    def _lock(self) -> dict[str, Any]:
        until = retain_until(self._clock(), self._lock_days)
        if until is None:
            return {}
        return {"ObjectLockMode": self._lock_mode, "ObjectLockRetainUntilDate": until}

    def _multipart(
        self, key: str, file: BagFile, bag: Path, bucket: TokenBucket, uploads: Uploads, lock: dict[str, Any]
    ) -> str:
        upload_id = uploads.find(file.path)
        there = self._parts_there(key, upload_id)
        if there is None:
            upload_id = None
        for stray in self._client.list_multipart_uploads(Bucket=self._bucket, Prefix=key).get("Uploads", []):
            if stray["Key"] == key and stray["UploadId"] != upload_id:  # started, then killed before journalled
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=stray["UploadId"])
        if upload_id is None:
            started = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ChecksumAlgorithm="SHA256", **lock
            )
            upload_id = str(started["UploadId"])
            uploads.started(file.path, upload_id)
        whole, digests, parts = hashlib.sha256(), [], []
        for number, offset in enumerate(range(0, max(file.size, 1), self._part), 1):
            data = read_paced(bag / file.path, offset, self._part, bucket)
            whole.update(data)
            digest = hashlib.sha256(data).digest()
            digests.append(digest)
            checksum = base64.b64encode(digest).decode()
            etag = _kept(there or {}, number, data, checksum)
            if etag is None:
                answer = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                )
                etag = answer["ETag"]
            parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
        if whole.hexdigest() != file.sha256:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
            uploads.ended(file.path)
            _check_local(file, whole.hexdigest())
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        uploads.ended(file.path)
        composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() + f"-{len(parts)}"
        return self._confirmed(key, composite, None)

    def _parts_there(self, key: str, upload_id: str | None) -> dict[int, dict[str, Any]] | None:
        """The parts a journalled upload already has (None: no such upload, start anew)."""
        if upload_id is None:
            return None
        found: dict[int, dict[str, Any]] = {}
        try:
            for page in self._client.get_paginator("list_parts").paginate(
                Bucket=self._bucket, Key=key, UploadId=upload_id
            ):
                found.update({int(p["PartNumber"]): p for p in page.get("Parts", [])})
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return None
            raise
        return found

    def _confirmed(self, key: str, expected: str, answered: str | None) -> str:
        """The server's own word on the object's SHA-256 (from its answer, else asked again)."""
        if answered is None:
            answered = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED").get(
                "ChecksumSHA256"
            )
        if answered is None:
            raise TargetError("unconfirmed", f"{key}: the server keeps no SHA-256 for it (does it support checksums?)")
        if _plain(answered) != _plain(expected):
            raise TargetError("checksum_refused", f"{key}: the server holds SHA-256 {answered}, the bag {expected}")
        return expected

    def listing(self, run_id: str) -> set[str]:
        top = self._key(run_id, "")
        found: set[str] = set()
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=top):
                found.update(item["Key"][len(top) :] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as err:
            raise self._failure(err, top) from None
        return found

    def problem(self, run_id: str, path: str, sha256: str, remote_checksum: str) -> str | None:
        key = self._key(run_id, path)
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
            kept = head.get("ChecksumSHA256")
            if kept is not None:
                return (
                    None
                    if _plain(kept) == _plain(remote_checksum)
                    else f"checksum mismatch (sent {remote_checksum}, kept {kept})"
                )
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]  # no checksum kept: read it
            digest = hashlib.sha256()
            for chunk in iter(lambda: body.read(1 << 20), b""):
                digest.update(chunk)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in MISSING:
                return "missing"
            raise self._failure(err, key) from None
        except BotoCoreError as err:
            raise self._failure(err, key) from None
        actual = digest.hexdigest()
        return None if actual == sha256 else f"checksum mismatch (manifest {sha256}, object {actual})"

    def _failure(self, err: ClientError | BotoCoreError, key: str) -> TargetError:
        if isinstance(err, NoCredentialsError):
            return TargetError("credentials", "no AWS credentials (credentials_file, environment, ~/.aws or profile)")
        reason = "failed"
        if isinstance(err, (PartialCredentialsError, ProfileNotFound)):
            reason = "credentials"
        elif isinstance(err, ConnectionError):
            reason = "unreachable"
        elif isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            reason = "checksum_refused" if code in REFUSED_CHECKSUM else "refused"
        return TargetError(reason, self._without_secrets(f"s3://{self._bucket}/{key}: {err}"))

    def _without_secrets(self, text: str) -> str:
        """`text` with the credentials in use (when any could be read) and any URL password hidden."""
        try:
            credentials = self._session.get_credentials()
        except BotoCoreError:
            credentials = None
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            for secret in (frozen.secret_key, frozen.token, frozen.access_key):
                if secret:
                    text = text.replace(secret, "***")
        return hide_passwords(text)

    def close(self) -> None:
        self._client.close()


def _check_local(file: BagFile, actual: str) -> None:
    if actual != file.sha256:
        raise TargetError("local_mismatch", f"{file.path}: the local file no longer matches the manifest (not sent)")


def _kept(there: dict[int, dict[str, Any]], number: int, data: bytes, checksum: str) -> str | None:
    """The ETag of part `number` when the server already has exactly these bytes for it."""
    part = there.get(number)
    if part is None or int(part.get("Size", -1)) != len(data):
        return None
    if part.get("ChecksumSHA256") is not None:
        return str(part["ETag"]) if part["ChecksumSHA256"] == checksum else None
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()  # S3's ETag of an unencrypted part
    return str(part["ETag"]) if str(part["ETag"]).strip('"') == md5 else None
