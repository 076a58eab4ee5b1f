-- Mooring hub store, schema 1 (SQLite).
-- Times are unix seconds (INTEGER). Secrets are stored only as argon2id
-- hashes (tokens, API keys) or sealed with the at-rest key (registry
-- passwords).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE environments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL CHECK (kind IN ('local', 'edge')),
    socket         TEXT,
    created_at     INTEGER NOT NULL,
    agent_id       TEXT,
    agent_name     TEXT,
    agent_version  TEXT,
    docker_version TEXT,
    hostname       TEXT,
    capabilities   TEXT,
    connected_at   INTEGER,
    last_seen      INTEGER
);

CREATE TABLE agent_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    env_id       INTEGER NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE INDEX agent_tokens_prefix ON agent_tokens (prefix);
CREATE INDEX agent_tokens_env ON agent_tokens (env_id);

CREATE TABLE registries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    url          TEXT NOT NULL,
    username     TEXT,
    password_enc BLOB,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    environments TEXT,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
