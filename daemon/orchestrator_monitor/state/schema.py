"""SQLAlchemy tables of the state database; `schema/state.*.sql` is the same schema as DDL.

Timestamps are TEXT (ISO-8601 UTC) on every backend: that is what executors write with
plain SQL, and `timefmt.parse_timestamp` reads every accepted shape. A test checks that
these tables and the DDL files produce the same columns and indexes.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table, Text, text

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("name", Text),
    Column("status", Text, nullable=False),
    Column("run_dir", Text),
    Column("created_at", Text),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("updated_at", Text),
    Index("ix_runs_status", "status"),
    Index("ix_runs_updated_at", "updated_at"),
)

workstreams = Table(
    "workstreams",
    metadata,
    Column("workstream_id", Text, primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("name", Text),
    Column("status", Text, nullable=False),
    Column("created_at", Text),
    Column("updated_at", Text),
    Index("ix_workstreams_run_id_status", "run_id", "status"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", Text, primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("workstream_id", Text),
    Column("name", Text),
    Column("tool", Text),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("created_at", Text),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("updated_at", Text),
    # (run_id, status) answers "how far is each run" from the index alone.
    Index("ix_tasks_run_id_status", "run_id", "status"),
    Index("ix_tasks_updated_at", "updated_at"),
)


def archival_log_table(name: str, meta: MetaData | None = None) -> Table:
    """The monitor's archival rows, in `archival_log` or (beside an executor's own) `monitor_archival_log`."""
    return Table(
        name,
        meta if meta is not None else MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("archive_path", Text),
        Column("file_count", Integer),
        Column("total_bytes", BigInteger().with_variant(Integer, "sqlite")),  # a 2 GiB archive overflows int4
        Column("manifest_sha256", Text),
        Column("error", Text),
        Column("started_at", Text),
        Column("finished_at", Text),
        Index(f"ix_{name}_run_id", "run_id"),
    )


archival_log = archival_log_table("archival_log", metadata)

EXECUTOR_TABLES = (runs, workstreams, tasks)
