-- Family `uet` (see /work/shared/EXECUTORS.md): the orchestrator's run engine, one row per step attempt.
-- Journal mode is the SQLite default (delete); no WAL pragma here on purpose.

CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    phase_id TEXT NOT NULL,
    workstream_id TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'quarantined', 'canceled')),
    exit_code INTEGER,
    error_message TEXT,
    metadata TEXT
);

CREATE TABLE IF NOT EXISTS step_attempts (
    step_attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    sequence INTEGER NOT NULL,
    tool_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'canceled')),
    exit_code INTEGER,
    error_log TEXT,
    metadata TEXT
);

CREATE TABLE IF NOT EXISTS run_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    timestamp TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT
);

CREATE INDEX IF NOT EXISTS idx_runs_state ON runs(state);
CREATE INDEX IF NOT EXISTS idx_step_attempts_run ON step_attempts(run_id);
