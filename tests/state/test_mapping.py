"""Schema mappings as plain data: the built-in ones, translation both ways, and what a bad mapping file gets."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.state.fit import archival_table, fit_problems, fitting, fold, missing_indexes, refusal
from orchestrator_monitor.state.mapping import BUILT_IN, built_in, built_in_text, load_mapping, parse_mapping

REFERENCE_TOML = tomllib.loads(built_in_text("reference"))


def test_every_built_in_mapping_parses_and_names_itself() -> None:
    assert [built_in(name).name for name in BUILT_IN] == list(BUILT_IN)


def test_the_uet_vocabulary_both_ways() -> None:
    uet = built_in("uet")
    assert uet.runs.statuses.canonical("quarantined") == "FAILED"
    assert uet.runs.statuses.canonical("exploded") == "exploded"  # unknown: shown as it is
    assert uet.runs.statuses.raw_values(["PENDING", "RUNNING"]) == ("pending", "running")
    assert uet.runs.written("PARTIAL") == "failed" and uet.runs.read_back("PARTIAL") == "FAILED"
    assert uet.true_status("FAILED", "PARTIAL") == "PARTIAL"  # what the monitor decided, stored as failed
    assert uet.true_status("FAILED", None) == "FAILED"  # the engine's own end
    assert uet.true_status("COMPLETED", "PARTIAL") == "COMPLETED"  # changed since: the database wins
    assert built_in("reference").true_status("FAILED", "PARTIAL") == "FAILED"


def test_pipeline_tasks_reach_their_run_through_workstreams() -> None:
    pipeline = built_in("pipeline")
    assert pipeline.tasks.run is None and pipeline.tasks.workstream == "workstream_id"
    assert pipeline.tasks.statuses.raw_values(["RUNNING"]) == ("RUNNING", "VALIDATING")


def mutated(path: str, value: object) -> dict:
    """The reference mapping with one key (dotted path) set, or removed when `value` is None."""
    data = tomllib.loads(built_in_text("reference"))
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table[key]
    if value is None:
        del table[last]
    else:
        table[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("runs.write.PARTIAL", "partial", "runs.write.PARTIAL must be one of the executor's run statuses"),
        ("tasks.attempts", "rows", "tasks.order is needed when attempts = 'rows'"),
        ("tasks.statuses.FAILED", ["SUCCEEDED"], "repeats 'SUCCEEDED'"),
        ("tasks.statuses.EXPLODED", ["x"], "tasks.statuses.EXPLODED is not a mapping key"),
        ("runs.run_dir_template", "runs/here", "must be a path containing {run_id}"),
        ("runs.table", "", "runs.table must be a non-empty string"),
        ("defaults.settle_seconds", -1, "defaults.settle_seconds must be a number of seconds >= 0"),
    ],
)
def test_a_bad_mapping_is_one_line_naming_the_key(path: str, value: object, message: str) -> None:
    with pytest.raises(BadInput, match=r"^mine: ") as raised:
        parse_mapping(mutated(path, value), "mine")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_task_must_reach_its_run() -> None:
    data = mutated("tasks.run", None)
    del data["workstreams"]  # and no workstream to go through
    with pytest.raises(BadInput, match=r"tasks\.run is missing: a task needs a run column"):
        parse_mapping(data, "mine")


def test_a_mapping_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("name = \n")
    with pytest.raises(BadInput, match=r"database.schema_file .*mine.toml is not valid TOML"):
        load_mapping(None, path)
    with pytest.raises(BadInput, match="no such built-in mapping"):
        load_mapping("nope", None)


UET_TABLES = {
    "runs": ["run_id", "project_id", "state", "created_at", "started_at", "ended_at", "error_message"],
    "step_attempts": [
        "step_attempt_id",
        "run_id",
        "sequence",
        "tool_id",
        "state",
        "started_at",
        "ended_at",
        "error_log",
    ],
    "archival_log": ["id", "run_id", "archive_path", "archived_at", "size_bytes"],
}


def test_what_fits_and_what_is_missing() -> None:
    found = fold(UET_TABLES)
    assert fitting(found) == ["uet"]
    problems = fit_problems(built_in("reference"), found)
    assert problems[0] == "table runs has no column status, name, run_dir, finished_at, updated_at"
    assert "no table tasks" in problems
    line = refusal(built_in("reference"), problems, found, "db")
    assert line.endswith("(it fits the built-in mapping uet: set database.schema = 'uet')")
    assert refusal(built_in("reference"), ["no table runs"], fold({"x": ["y"]}), "db") == (
        "state database db has no table 'runs' (run 'orchestrator init' to create the schema)"
    )


def test_the_monitor_keeps_its_archival_rows_apart_from_an_executor_archival_log() -> None:
    reference = built_in("reference")
    assert archival_table(reference, fold(UET_TABLES)) == "monitor_archival_log"
    assert archival_table(reference, fold({"runs": ["run_id"]})) == "archival_log"
    ours = ["id", "run_id", "action", "status", "archive_path", "started_at", "finished_at", "error"]
    assert archival_table(reference, fold({"archival_log": ours})) == "archival_log"


def test_missing_indexes_are_statements_to_hand_over_never_to_run() -> None:
    uet = built_in("uet")
    have = {"runs": [("state",)], "step_attempts": [("run_id",)]}
    assert missing_indexes(uet, have) == [
        "CREATE INDEX monitor_ix_step_attempts_run_id_state ON step_attempts (run_id, state);"
    ]
    assert missing_indexes(uet, {**have, "step_attempts": [("run_id", "state", "sequence")]}) == []
