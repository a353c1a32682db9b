-- The monitor's own tables in a shared PostgreSQL state database (orchestrator init creates them;
-- a DBA may instead run this file). Several daemons share them: see README, "Running several daemons".
-- Kept in step with daemon/orchestrator_monitor/ledger/store.py by tests/ledger/test_store.py.

CREATE TABLE IF NOT EXISTS monitor_archive_facets (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, value)
);
CREATE INDEX IF NOT EXISTS ix_monitor_archive_facets_search ON monitor_archive_facets (kind, value, status, ended_at);

CREATE TABLE IF NOT EXISTS monitor_archive_locations (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, location)
);

CREATE TABLE IF NOT EXISTS monitor_archives (
    run_id TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    archived_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    verified_at TEXT,
    verify_result TEXT,
    verify_detail TEXT,
    PRIMARY KEY (run_id)
);
CREATE INDEX IF NOT EXISTS ix_monitor_archives_audit ON monitor_archives (verified_at, archived_at, run_id);
CREATE INDEX IF NOT EXISTS ix_monitor_archives_ended ON monitor_archives (ended_at, run_id);
DROP INDEX IF EXISTS ix_monitor_archives_ended_at;
CREATE INDEX IF NOT EXISTS ix_monitor_archives_name ON monitor_archives (name text_pattern_ops, ended_at);
CREATE INDEX IF NOT EXISTS ix_monitor_archives_result ON monitor_archives (verify_result);
CREATE INDEX IF NOT EXISTS ix_monitor_archives_status ON monitor_archives (status);
CREATE INDEX IF NOT EXISTS ix_monitor_archives_status_ended ON monitor_archives (status, ended_at);

CREATE TABLE IF NOT EXISTS monitor_daemons (
    daemon_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    beat_at TEXT NOT NULL,
    lease_seconds FLOAT NOT NULL,
    stopped INTEGER DEFAULT '0' NOT NULL,
    PRIMARY KEY (daemon_id)
);

CREATE TABLE IF NOT EXISTS monitor_heartbeats (
    daemon_id TEXT NOT NULL,
    job TEXT NOT NULL,
    pid INTEGER NOT NULL,
    beat_at TEXT NOT NULL,
    errors TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (daemon_id, job)
);

CREATE TABLE IF NOT EXISTS monitor_meta (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key)
);

CREATE TABLE IF NOT EXISTS monitor_offload_files (
    target TEXT NOT NULL,
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    remote_checksum TEXT NOT NULL,
    confirmed_at TEXT NOT NULL,
    PRIMARY KEY (target, run_id, path)
);

CREATE TABLE IF NOT EXISTS monitor_offload_uploads (
    target TEXT NOT NULL,
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (target, run_id, path)
);

CREATE TABLE IF NOT EXISTS monitor_prunings (
    run_id TEXT NOT NULL,
    target TEXT NOT NULL,
    pruned_at TEXT NOT NULL,
    why TEXT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    kept BIGINT NOT NULL,
    PRIMARY KEY (run_id, target)
);

CREATE TABLE IF NOT EXISTS monitor_refusals (
    run_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id)
);

CREATE TABLE IF NOT EXISTS monitor_retention_holds (
    run_id TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, target, reason)
);

CREATE TABLE IF NOT EXISTS monitor_runs (
    run_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    status TEXT,
    marked_by TEXT,
    tasks TEXT,
    fingerprint TEXT,
    reopened INTEGER DEFAULT '0' NOT NULL,
    owner TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id)
);

DROP INDEX IF EXISTS ix_monitor_runs_active;

CREATE INDEX IF NOT EXISTS ix_monitor_runs_owed ON monitor_runs (phase, owner) WHERE phase IN ('marking', 'completed', 'announced', 'reopened', 'published', 'archived');

CREATE INDEX IF NOT EXISTS ix_monitor_runs_updated_at ON monitor_runs (updated_at);

CREATE TABLE IF NOT EXISTS monitor_sequences (
    daemon_id TEXT NOT NULL,
    next_seq BIGINT NOT NULL,
    PRIMARY KEY (daemon_id)
);
