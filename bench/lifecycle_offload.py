"""Benchmark of offload: bags sent to a local S3 server by our offload pass, beside boto3's own transfer
manager (s3transfer, what `aws s3 cp --recursive` runs) sending the same files, in the same run.

Issue #17. N bags made by the real archiver (each: 24 files of 64 KiB-1 MiB and one of 8-24 MiB),
then rounds alternating two ways of putting every file of every bag into a fresh bucket of moto's
standalone server (a subprocess on loopback, which stands in for a production S3 service):
  (a) our pass (`Offloader.run_pass`: SHA-256 checked against the manifest, ChecksumSHA256 sent, the
      journal written per file, the tag manifest last, the catalog's location and an event per bag),
  (b) `TransferManager.upload` of every file at once (10 threads, 8 MiB multipart), as the AWS CLI does.
Medians in MB/s of the bags' bytes and the ratio (goal: (a) >= 0.8x (b)). Both pay the same server.

    .venv/bin/python bench/lifecycle_offload.py           # 12 bags, 5 rounds
    .venv/bin/python bench/lifecycle_offload.py --quick   # 3 bags, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from orchestrator_monitor.cli.main import main as cli_main
from orchestrator_monitor.config import OffloadSettings, OffloadTarget, Settings, load_settings
from orchestrator_monitor.demo.simulator import bulk_populate
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.offload.journal import OffloadJournal
from orchestrator_monitor.offload.offloader import Offloader
from orchestrator_monitor.offload.open import open_targets
from orchestrator_monitor.timefmt import utc_now
from s3transfer.manager import TransferManager

MIB = 1 << 20
GOAL = 0.8


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return server, endpoint
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("moto's server did not start") from None
            time.sleep(0.1)  # a server process we start: nothing to await but its port


def make_bags(workspace: Path, bags: int, rng: random.Random) -> list[Path]:
    """Terminal runs with files, archived by the real archiver; their bags."""
    bulk_populate(workspace / ".state" / "orchestration.db", runs=bags, tasks_per_run=3, open_runs=0)
    for n in range(bags):
        run_dir = workspace / "runs" / f"run-{n:06d}"
        run_dir.mkdir(parents=True)
        for f in range(24):
            (run_dir / f"f{f:02d}.bin").write_bytes(rng.randbytes(rng.randint(64 << 10, MIB)))
        (run_dir / "big.bin").write_bytes(rng.randbytes(rng.randint(8 * MIB, 24 * MIB)))
        assert cli_main(["archive", "--workspace", str(workspace), "--run", run_dir.name]) == 0
    return sorted((workspace / ".archive").glob("run-*"))


def files_of(bags: list[Path]) -> list[tuple[Path, str]]:
    """Every file of every bag and the key it gets (`<run id>/<path in the bag>`)."""
    return [
        (path, f"{bag.name}/{path.relative_to(bag)}")
        for bag in bags
        for path in sorted(bag.rglob("*"))
        if path.is_file()
    ]


def ours(settings: Settings, endpoint: str, bucket: str) -> Callable[[], None]:
    target = OffloadTarget(name=bucket, kind="s3", bucket=bucket, endpoint_url=endpoint, region="us-east-1")
    offload = OffloadSettings(enabled=True, targets=[target])
    configured = settings.model_copy(update={"offload": offload})
    store = open_store(configured)
    assert store is not None
    offloader = Offloader(
        offload,
        open_targets(configured),
        Catalog(store),
        OffloadJournal(store),
        lambda *_, **__: None,
        threading.Event(),
        settings.workspace / ".archive",
    )

    def send() -> None:
        done = offloader.run_pass(utc_now())
        assert not done.failed, done.failed
        offloader.close()

    return send


def baseline(client: Any, files: list[tuple[Path, str]], bucket: str) -> Callable[[], None]:
    def send() -> None:
        with TransferManager(client, TransferConfig()) as manager:  # the AWS CLI's defaults: 10 threads, 8 MiB
            futures = [manager.upload(str(path), bucket, key) for path, key in files]
            for future in futures:
                future.result()

    return send


def run(quick: bool) -> None:
    """Print both throughputs, their medians and the ratio against the goal."""
    bags_wanted, rounds = (3, 3) if quick else (12, 5)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    server, endpoint = start_server()
    base = Path(tempfile.mkdtemp(prefix="bench-offload-", dir="/var/tmp"))
    try:
        workspace = base / "ws"
        assert cli_main(["init", "--workspace", str(workspace)]) == 0
        bags = make_bags(workspace, bags_wanted, random.Random(17))
        files = files_of(bags)
        total = sum(path.stat().st_size for path, _ in files)
        print(f"offload: {len(bags)} bags, {len(files)} files, {total / MIB:.0f} MiB, to moto's server at {endpoint}")
        settings = load_settings(workspace, overrides=["events.sinks="])
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        results: dict[str, list[float]] = {"offload pass": [], "s3transfer": []}
        for number in range(rounds):
            order = ["offload pass", "s3transfer"] if number % 2 == 0 else ["s3transfer", "offload pass"]
            for name in order:
                bucket = f"bench-{number}-{'ours' if name == 'offload pass' else 'base'}"
                client.create_bucket(Bucket=bucket)
                action = ours(settings, endpoint, bucket) if name == "offload pass" else baseline(client, files, bucket)
                started = time.perf_counter()
                action()
                seconds = time.perf_counter() - started
                results[name].append(seconds)
                print(f"round {number + 1}: {name:<13} {seconds:6.2f} s  {total / MIB / seconds:6.1f} MB/s", flush=True)
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # free the server
                    for item in page.get("Contents", []):
                        client.delete_object(Bucket=bucket, Key=item["Key"])
        medians = {name: total / MIB / statistics.median(times) for name, times in results.items()}
        for name, rate in medians.items():
            print(f"  median {name:<13} {rate:6.1f} MB/s")
        ratio = medians["offload pass"] / medians["s3transfer"]
        print(f"offload pass / s3transfer = {ratio:.2f}x  (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'NOT met'})")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 bags, 3 rounds")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
