"""A real S3 protocol server on loopback for the offload tests: moto's standalone server, over HTTP.

It stands in for a production S3 service, which cannot run here. Every test gets a bucket of its own
and a workspace whose configuration points a target at it, with credentials from a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from support import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A client of the server, as an operator's own tools would be (not the monitor's)."""
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="operator",
        aws_secret_access_key="operator",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bags-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)  # Object Lock turns versioning on
    return name
