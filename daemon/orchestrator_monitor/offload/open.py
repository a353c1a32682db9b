"""The configured targets, built: boto3 (the optional extra `s3`) is imported only when a target needs it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..config import Settings
from ..errors import BadInput, Unavailable
from ..timefmt import utc_now
from .directory import DirectoryTarget
from .targets import Target, TargetError


def open_targets(settings: Settings, clock: Callable[[], datetime] = utc_now) -> list[Target]:
    """Every `[[offload.targets]]`; `Unavailable` when an S3 one cannot be (boto3 missing, bad setup)."""
    offload = settings.offload
    targets: list[Target] = []
    try:
        for config in offload.targets:
            if config.kind == "directory":
                assert config.path is not None
                targets.append(DirectoryTarget(config.name, settings.resolve(config.path)))
                continue
            try:
                from .s3 import S3Target
            except ImportError:
                raise Unavailable(
                    f"offload target {config.name!r} needs boto3: pip install 'orchestrator-monitor[s3]'"
                ) from None
            if config.credentials_file is not None and not settings.resolve(config.credentials_file).is_file():
                raise BadInput(f"offload target {config.name!r}: credentials_file {config.credentials_file} not found")
            resolved = (
                config
                if config.credentials_file is None
                else config.model_copy(update={"credentials_file": settings.resolve(config.credentials_file)})
            )
            targets.append(
                S3Target(resolved, parallel=offload.parallel, multipart_bytes=offload.multipart_bytes, clock=clock)
            )
    except TargetError as err:
        for target in targets:
            target.close()
        raise Unavailable(f"offload: {err.detail}") from None
    return targets
