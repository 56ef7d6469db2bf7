-- Layers schema, SQLite. Times are INTEGER milliseconds since the Unix epoch (UTC); money is
-- INTEGER micro-credits; ids are TEXT UUIDs.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    tier          TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'starter', 'pro', 'team')),
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    password_hash TEXT,
    email_verified_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    env            TEXT NOT NULL CHECK (env IN ('live', 'test')),
    key_hash       BLOB NOT NULL,
    pepper_version INTEGER NOT NULL,
    display_prefix TEXT NOT NULL,
    last4          TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deactivated', 'deleted')),
    spend_limit_micros INTEGER CHECK (spend_limit_micros IS NULL OR spend_limit_micros >= 0),
    expires_at     INTEGER,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    state_changed_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);
CREATE INDEX api_keys_display_prefix_idx ON api_keys (display_prefix);

CREATE TABLE credit_balances (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    balance_micros INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE credit_transactions (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('grant', 'purchase', 'subscription_grant', 'usage', 'refund', 'adjustment')),
    amount_micros   INTEGER NOT NULL,
    balance_after_micros INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    reason          TEXT,
    request_id      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX credit_transactions_idempotency_key_key ON credit_transactions (idempotency_key);
CREATE INDEX credit_transactions_user_idx ON credit_transactions (user_id, created_at);

CREATE TABLE usage_logs (
    id                TEXT PRIMARY KEY NOT NULL,
    request_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id            TEXT,
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    upstream_model    TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    images            INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    streamed          INTEGER NOT NULL,
    usage_estimated   INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX usage_logs_user_idx ON usage_logs (user_id, created_at);
CREATE INDEX usage_logs_request_id_idx ON usage_logs (request_id);

CREATE TABLE audit_logs (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    user_id     TEXT REFERENCES users (id) ON DELETE SET NULL,
    event_type  TEXT NOT NULL,
    ip_address  TEXT,
    user_agent  TEXT,
    metadata    TEXT NOT NULL DEFAULT '{}',
    severity    TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical'))
);
CREATE INDEX audit_logs_user_idx ON audit_logs (user_id, created_at);
CREATE INDEX audit_logs_type_idx ON audit_logs (event_type, created_at);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    authenticated_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip_address   TEXT,
    user_agent   TEXT
);
CREATE UNIQUE INDEX sessions_token_hash_key ON sessions (token_hash);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Change feed for the in-process caches of every node: a key or account whose state changed.
CREATE TABLE cache_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL CHECK (scope IN ('key', 'account')),
    key_hash   BLOB,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX cache_events_created_idx ON cache_events (created_at);
