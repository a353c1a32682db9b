"""Fuzzing the monitor's inputs: whatever an executor, an operator or a file system hands it gives a clear
error or a warning, never a traceback, never a write outside the workspace (issue #13, item 4)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from archive_support import add_terminal_run, assert_bagit_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orchestrator_monitor.archive.archiver import fetch_terminal_run
from orchestrator_monitor.archive.failures import ArchiveFailure
from orchestrator_monitor.archive.verify import verify_bag
from orchestrator_monitor.config import SECTIONS, load_settings
from orchestrator_monitor.errors import BadInput, MonitorError
from orchestrator_monitor.finish.pipeline import open_pipeline
from orchestrator_monitor.reports.page import TEMPLATE_DIR, TEMPLATE_NAME, render_page
from orchestrator_monitor.state.mapping import built_in_text, parse_mapping
from orchestrator_monitor.state.setup import init_workspace
from orchestrator_monitor.views.reader import read_run, read_status, state_reader

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What SQLite lets an executor put in a TEXT column: any text, bytes, numbers (NULL where the schema allows).
column_values = st.one_of(
    st.text(max_size=40), st.binary(max_size=20), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)
)


@contextmanager
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No record at ERROR or above (a logged traceback is a traceback too)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        yield
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.fixture(scope="module")
def reference_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("fuzz-db")
    init_workspace(load_settings(workspace, environ={}))
    return workspace


@FUZZ
@given(
    statuses=st.lists(st.one_of(column_values, st.sampled_from(["RUNNING", "COMPLETED"])), min_size=1, max_size=4),
    task_statuses=st.lists(st.one_of(column_values, st.none()), max_size=5),
    times=st.lists(st.one_of(column_values, st.none()), min_size=3, max_size=3),
)
def test_any_status_or_time_in_the_rows_reads_as_warnings(
    reference_db: Path, caplog: pytest.LogCaptureFixture, statuses: list[object], task_statuses: list[object],
    times: list[object],
) -> None:  # fmt: skip
    db = reference_db / ".state" / "orchestration.db"
    with closing(sqlite3.connect(db)) as connection, connection:
        for table in ("tasks", "workstreams", "runs"):
            connection.execute(f"DELETE FROM {table}")
        for n, status in enumerate(statuses):
            connection.execute(
                "INSERT INTO runs (run_id, status, created_at, started_at, finished_at) VALUES (?, ?, ?, ?, ?)",
                (f"r{n}", status, *times),
            )
        for n, status in enumerate(task_statuses):
            connection.execute(
                "INSERT INTO tasks (task_id, run_id, status, finished_at) VALUES (?, 'r0', ?, ?)",
                (f"t{n}", "PENDING" if status is None else status, times[2]),
            )
    settings_ = load_settings(reference_db, environ={})
    with no_error_logs(caplog), state_reader(settings_) as state:
        view = read_status(state, NOW)
        detail = read_run(state, "r0", NOW)
    assert [run.run_id for run in view.runs] == [f"r{n}" for n in range(len(statuses))]
    assert detail.run.tasks_total == len(task_statuses)


@FUZZ
@given(
    section_key=st.sampled_from(
        [
            (section, field.alias or name)
            for section, model in SECTIONS.items()
            for name, field in model.model_fields.items()
        ]
    ),
    value=st.text(max_size=60),
)
def test_any_configuration_value_is_taken_or_refused_in_one_line(tmp_path: Path, section_key: tuple[str, str],
                                                                 value: str) -> None:  # fmt: skip
    section, key = section_key
    try:
        load_settings(tmp_path, environ={}, overrides=[f"{section}.{key}={value}"])
    except BadInput as err:
        assert "\n" not in str(err) and f"{section}.{key}" in str(err)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_configuration_file_is_taken_or_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config" / "monitor.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(tmp_path, environ={})
    except BadInput as err:
        assert "\n" not in str(err).strip() or "not valid TOML" in str(err)


@FUZZ
@given(
    path=st.sampled_from(["name", "runs.table", "runs.statuses.RUNNING", "runs.write.PARTIAL", "tasks.attempts",
                          "tasks.order", "runs.run_dir_template", "tasks.columns", "workstreams", "defaults"]),
    value=st.one_of(st.text(max_size=20), st.integers(), st.lists(st.text(max_size=5), max_size=3), st.booleans(),
                    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
)  # fmt: skip
def test_any_mapping_key_value_is_taken_or_refused_naming_it(path: str, value: object) -> None:
    import tomllib

    data = tomllib.loads(built_in_text("reference"))
    *parents, last = path.split(".")
    table = data
    for part in parents:
        table = table[part]
    table[last] = value
    try:
        parse_mapping(data, "fuzzed")
    except BadInput as err:
        assert str(err).startswith("fuzzed: ") and "\n" not in str(err)


TEMPLATE_TEXT = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            "{{ summary.run_id }}",
            "{% for x in %}",
            "{{ cycler.__init__.__globals__.os.system('touch ESCAPED') }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{% include '../../../etc/passwd' %}",
            "{{ summary.no_such_key.deeper }}",
            "{{ 1/0 }}",
        ]
    ),
)


@FUZZ
@given(template=TEMPLATE_TEXT)
def test_any_report_template_gives_a_page_and_runs_no_code(tmp_path: Path, template: str) -> None:
    templates = tmp_path / TEMPLATE_DIR
    templates.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ESCAPED").unlink(missing_ok=True)
    (templates / TEMPLATE_NAME).write_text(template, encoding="utf-8")
    summary = {
        "run_id": "r1", "status": "COMPLETED", "started_at": None, "finished_at": None, "duration_seconds": None,
        "tasks": {"total": 0, "by_status": {}}, "errors": {"total": 0}, "archive": {"path": None},
    }  # fmt: skip
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        page, warning = render_page({"summary": summary, "metrics": {}, "timeline": {}, "tools": {}}, tmp_path)
    finally:
        os.chdir(cwd)
    assert isinstance(page, str)
    assert warning is None or "\n" not in warning
    assert not (tmp_path / "ESCAPED").exists()  # a template is sandboxed: it cannot run a command
    assert "root:x:" not in page


# Names a file system allows: any bytes but "/" and NUL, up to 255 of them.
file_names = st.binary(min_size=1, max_size=255).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(file_names, min_size=1, max_size=6, unique=True), depth=st.integers(0, 40))
def test_any_file_name_or_depth_is_archived_or_refused_never_outside(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture, names: list[bytes], depth: int
) -> None:
    workspace = tmp_path_factory.mktemp("fuzz-archive")
    settings_ = load_settings(workspace, environ={})
    init_workspace(settings_)
    run_dir = add_terminal_run(workspace, "fz")
    folder = os.fsencode(run_dir) + b"".join(b"/d" for _ in range(depth))
    os.makedirs(folder, exist_ok=True)
    for n, name in enumerate(names):
        with open(folder + b"/" + name, "wb") as handle:
            handle.write(bytes([n]) * n)
    outside = set(os.listdir(workspace.parent))
    with no_error_logs(caplog), open_pipeline(settings_, threading.Event()) as pipeline:
        try:
            outcome, _ = pipeline.process(fetch_terminal_run(pipeline.archival, "fz"))
        except (ArchiveFailure, MonitorError) as failure:
            assert "\n" not in str(failure)
        else:
            assert verify_bag(outcome.path).problems == []
            if not any(_bagit_cannot_read(os.fsdecode(name)) for name in names):
                assert_bagit_valid(outcome.path)
    assert set(os.listdir(workspace.parent)) == outside


def _bagit_cannot_read(name: str) -> bool:
    """Names bagit-python misreads in a right manifest (RFC 8493): it strips the whitespace around a path
    (its issue #143) and reads lines with `codecs`, which also ends one at a vertical tab, a form feed,
    U+001C-U+001E, U+0085, U+2028 or U+2029; and it never decodes `%25` back to `%` (RFC 8493 section
    2.1.3). `orchestrator verify` reads those bags right."""
    return name != name.strip() or len(f"x{name}x".splitlines()) > 1 or "%" in name
