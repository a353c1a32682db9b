-- State database of the run orchestrator, SQLite dialect.
-- The executor owns runs, workstreams and tasks; the monitor writes only the completion
-- mark (runs.status, runs.finished_at, runs.updated_at) and archival_log rows.
-- Timestamps are ISO-8601 UTC text, e.g. 2026-11-24T06:48:28.745Z.
-- Create with: sqlite3 .state/orchestration.db < schema/state.sqlite.sql (or `orchestrator init`).
-- Primary keys are NOT NULL explicitly: SQLite would otherwise accept a NULL key.

CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT NOT NULL PRIMARY KEY,
    name        TEXT,
    status      TEXT NOT NULL,   -- PENDING RUNNING COMPLETED FAILED PARTIAL CANCELLED
    run_dir     TEXT,            -- relative to the workspace; NULL means runs/<run_id>
    created_at  TEXT,
    started_at  TEXT,
    finished_at TEXT,
    updated_at  TEXT
);
CREATE INDEX IF NOT EXISTS ix_runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS ix_runs_updated_at ON runs (updated_at);

CREATE TABLE IF NOT EXISTS workstreams (
    workstream_id TEXT NOT NULL PRIMARY KEY,
    run_id        TEXT NOT NULL,
    name          TEXT,
    status        TEXT NOT NULL, -- as runs
    created_at    TEXT,
    updated_at    TEXT
);
CREATE INDEX IF NOT EXISTS ix_workstreams_run_id_status ON workstreams (run_id, status);

CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT NOT NULL PRIMARY KEY,
    run_id        TEXT NOT NULL,
    workstream_id TEXT,
    name          TEXT,
    tool          TEXT,
    status        TEXT NOT NULL, -- PENDING QUEUED RUNNING SUCCEEDED FAILED SKIPPED CANCELLED
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_type    TEXT,
    error_message TEXT,
    created_at    TEXT,
    started_at    TEXT,
    finished_at   TEXT,
    updated_at    TEXT
);
-- (run_id, status) answers "how far is each run" from the index alone.
CREATE INDEX IF NOT EXISTS ix_tasks_run_id_status ON tasks (run_id, status);
CREATE INDEX IF NOT EXISTS ix_tasks_updated_at ON tasks (updated_at);

CREATE TABLE IF NOT EXISTS archival_log (
    id              INTEGER NOT NULL PRIMARY KEY,
    run_id          TEXT NOT NULL,
    action          TEXT NOT NULL,
    status          TEXT NOT NULL, -- STARTED SUCCEEDED FAILED
    archive_path    TEXT,
    file_count      INTEGER,
    total_bytes     INTEGER,
    manifest_sha256 TEXT,
    error           TEXT,
    started_at      TEXT,
    finished_at     TEXT
);
CREATE INDEX IF NOT EXISTS ix_archival_log_run_id ON archival_log (run_id);
