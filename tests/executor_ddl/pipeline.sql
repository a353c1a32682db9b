-- Family `pipeline` (see /work/shared/EXECUTORS.md): the state-machine layer, runs -> workstreams -> tasks.
-- A task reaches its run only through its workstream.

CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'INITIALIZING'
        CHECK (state IN ('INITIALIZING', 'RUNNING', 'PAUSED', 'COMPLETED', 'FAILED')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT,
    metadata TEXT,
    progress_percentage REAL NOT NULL DEFAULT 0.0
);

CREATE TABLE IF NOT EXISTS workstreams (
    workstream_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    state TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'INITIALIZING', 'RUNNING', 'PAUSED', 'BLOCKED', 'COMPLETED', 'FAILED',
                         'CANCELLED', 'ABANDONED')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT,
    metadata TEXT,
    progress_percentage REAL NOT NULL DEFAULT 0.0
);

CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    workstream_id TEXT NOT NULL REFERENCES workstreams(workstream_id),
    state TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'QUEUED', 'VALIDATING', 'RUNNING', 'COMPLETED', 'FAILED', 'BLOCKED',
                         'CANCELLED', 'RETRYING')),
    worker_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    completed_at TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 3,
    metadata TEXT
);

CREATE INDEX IF NOT EXISTS idx_runs_state ON runs(state);
CREATE INDEX IF NOT EXISTS idx_workstreams_run ON workstreams(run_id);
CREATE INDEX IF NOT EXISTS idx_tasks_workstream ON tasks(workstream_id);
