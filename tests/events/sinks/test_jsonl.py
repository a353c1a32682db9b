from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from events_support import bus_with_log, log_files, read_objects, status_event
from orchestrator_monitor.events.types import EventType

WAIT_SECONDS = 30.0


def wait_for(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    """Re-check `condition` until it holds; for outside processes that cannot signal us."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        pause.wait(0.05)
    return condition()


def test_rotation_keeps_whole_lines_and_n_files(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    bus, _ = bus_with_log(path, rotate_bytes=20_000, keep_files=3, min_rotate_seconds=0)
    for index in range(2000):
        status_event(bus, index=index)
    bus.close()
    files = log_files(path)
    assert [f.name for f in files] == ["monitor.jsonl.3", "monitor.jsonl.2", "monitor.jsonl.1", "monitor.jsonl"]
    assert all(f.stat().st_size <= 20_000 for f in files)
    seqs = [line["seq"] for line in read_objects(*files)]
    assert seqs == list(range(seqs[0], 2001))  # the oldest files were dropped, the rest is contiguous


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tail") is None, reason="needs tail (coreutils)")
def test_tail_follow_name_misses_and_repeats_nothing_across_rotations_under_load(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    path.touch()
    out = tmp_path / "tail.out"
    with (
        out.open("wb") as tail_out,
        subprocess.Popen(
            ["tail", "-F", "-n", "+1", "-s", "0.05", str(path)], stdout=tail_out, stderr=subprocess.DEVNULL
        ) as tail,
    ):
        try:
            bus, _ = bus_with_log(path, rotate_bytes=100_000, keep_files=100, min_rotate_seconds=0.1)

            def publish(thread: int) -> None:
                pause = threading.Event()
                for index in range(5000):
                    status_event(bus, thread=thread, index=index)
                    if index % 250 == 0:  # bursts: about 1.5 s in all, so rotations come every 0.1 s
                        pause.wait(0.06)

            threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            bus.close()
            assert len(log_files(path)) > 8  # it did rotate, many times
            assert wait_for(lambda: out.read_bytes().count(b"\n") >= 20_000)
        finally:
            tail.terminate()
    seqs = [orjson.loads(line)["seq"] for line in out.read_bytes().splitlines()]
    assert seqs == list(range(1, 20_001))


def test_a_file_moved_away_by_logrotate_is_followed_by_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    moved = tmp_path / "monitor.jsonl-20260101"
    bus, _ = bus_with_log(path)
    stop = threading.Event()

    def publish() -> None:
        index = 0
        while not stop.is_set() or index < 2000:
            status_event(bus, index=index)
            index += 1

    writer = threading.Thread(target=publish)
    writer.start()
    assert wait_for(lambda: path.exists() and path.stat().st_size > 20_000)
    os.rename(path, moved)  # what logrotate does (without copytruncate), mid-stream
    assert wait_for(lambda: path.exists() and path.stat().st_size > 0)
    stop.set()
    writer.join()
    bus.close()
    before, after = read_objects(moved), read_objects(path)
    seqs = [line["seq"] for line in before + after]
    assert before and after and seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, so that the log can fill it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (CI runs as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_full_log_disk_is_survived_counted_and_reported_when_space_returns(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (900 << 10))
    path = small_disk / "monitor.jsonl"
    bus, sink = bus_with_log(path, queue_size=100)
    warnings = bus.subscribe([EventType.WARNING])
    published = [status_event(bus, index=index, pad="x" * 100) for index in range(3000)]  # ~700 KB: no room
    assert sink.flush(WAIT_SECONDS)
    assert sink.unwritten_lines > 0 and sink.running  # kept, counted, still going
    # the file may end inside a line now: its rest is the first thing written when space returns
    filler.unlink()  # space returns; the writer retries on its own
    notice = warnings.get(timeout=WAIT_SECONDS)
    bus.close()
    assert notice is not None and notice.type == EventType.WARNING
    assert notice.data["what"] == "log_write_failed" and "ENOSPC" in notice.data["detail"]
    lines = read_objects(path)
    assert [line["seq"] for line in lines] == [*published, notice.seq]
    assert sink.lost_lines == 0 and sink.unwritten_lines == 0


def test_a_line_left_torn_by_a_crash_is_closed_before_anything_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    path.write_bytes(b'{"time":"2026-01-01T00:00:00.000Z","type":"RUN_STA')
    bus, _ = bus_with_log(path)
    seq = status_event(bus)
    bus.close()
    torn, line = path.read_bytes().splitlines()
    assert torn.startswith(b'{"time"') and orjson.loads(line)["seq"] == seq
