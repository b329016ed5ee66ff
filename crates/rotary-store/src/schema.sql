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
    expected_destroy_at  INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS secrets_by_created ON secrets (created_at, id);
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
