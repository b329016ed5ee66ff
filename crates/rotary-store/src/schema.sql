-- Rotary SQLite schema. Statements are idempotent; run at every start.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS protection_keys (
    key_id     INTEGER PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS secrets (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    memo                 TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_before_revoke TEXT,
    rotation_targets     TEXT NOT NULL,
    wrapped_dek          BLOB NOT NULL,
    active_version       INTEGER,
    pending_version      INTEGER,
    previous_version     INTEGER,
    next_version         INTEGER NOT NULL,
    revision             INTEGER NOT NULL,
    auto_rotation        INTEGER NOT NULL,
    rotation_period_days INTEGER,
    trigger_id           TEXT,
    next_rotation_at     INTEGER,
    last_rotation_at     INTEGER,
    rotation_phase       TEXT,
    schedule_base_at     INTEGER,
    expected_destroy_at  INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS secrets_by_created ON secrets (created_at, id);
-- The scheduler's index: only secrets with rotation on, by due time.
CREATE INDEX IF NOT EXISTS secrets_by_due ON secrets (next_rotation_at) WHERE auto_rotation = 1;
CREATE INDEX IF NOT EXISTS secrets_by_trigger ON secrets (trigger_id) WHERE trigger_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS secrets_by_destroy ON secrets (expected_destroy_at) WHERE expected_destroy_at IS NOT NULL;

-- Versions are immutable: rows are inserted and pruned, never updated.
CREATE TABLE IF NOT EXISTS secret_versions (
    secret_id  TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (secret_id, version)
);
CREATE TRIGGER IF NOT EXISTS secret_versions_immutable
BEFORE UPDATE ON secret_versions
BEGIN
    SELECT RAISE(ABORT, 'secret versions are immutable');
END;

CREATE TABLE IF NOT EXISTS access_keys (
    access_key     TEXT PRIMARY KEY,
    sealed_secret  BLOB NOT NULL,
    role           TEXT NOT NULL,
    secret_pattern TEXT,
    description    TEXT,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);

CREATE TABLE IF NOT EXISTS audit (
    seq            INTEGER PRIMARY KEY,
    ts             INTEGER NOT NULL,
    access_key     TEXT,
    action         TEXT NOT NULL,
    secret_id      TEXT,
    result         TEXT NOT NULL,
    client_address TEXT,
    request_id     TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS triggers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    config        TEXT NOT NULL,
    sealed_params BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id             TEXT PRIMARY KEY,
    secret_id      TEXT NOT NULL,
    token_hash     BLOB UNIQUE,
    status         TEXT NOT NULL,
    is_open        INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    trigger_id     TEXT,
    run_at         INTEGER NOT NULL,
    started_at     INTEGER,
    deadline_at    INTEGER,
    finished_at    INTEGER,
    error          TEXT,
    pending_stored INTEGER NOT NULL,
    revision       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
-- At most one open job per secret, enforced by the store.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_open ON jobs (secret_id) WHERE is_open = 1;
CREATE INDEX IF NOT EXISTS jobs_by_secret ON jobs (secret_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (run_at) WHERE status = 'QUEUED';
CREATE INDEX IF NOT EXISTS jobs_deadline ON jobs (deadline_at) WHERE status IN ('DISPATCHED', 'RUNNING');

CREATE TABLE IF NOT EXISTS job_steps (
    seq     INTEGER PRIMARY KEY,
    job_id  TEXT NOT NULL,
    ts      INTEGER NOT NULL,
    step    TEXT NOT NULL,
    result  TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_steps_by_job ON job_steps (job_id, seq);

CREATE TABLE IF NOT EXISTS job_values (
    job_id     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    source     TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
);
