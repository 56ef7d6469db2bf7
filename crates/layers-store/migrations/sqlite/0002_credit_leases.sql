-- Credit holds and settlement (issue 4). Each node leases credit per key from the balance and
-- holds/settles against it in memory; settlements debit the ledger in batches.

ALTER TABLE credit_balances ADD COLUMN leased_micros INTEGER NOT NULL DEFAULT 0 CHECK (leased_micros >= 0);

ALTER TABLE users ADD COLUMN max_credits_per_request_micros INTEGER;
ALTER TABLE users ADD COLUMN max_credits_per_hour_micros INTEGER;
ALTER TABLE api_keys ADD COLUMN max_credits_per_request_micros INTEGER;
ALTER TABLE api_keys ADD COLUMN max_credits_per_hour_micros INTEGER;
ALTER TABLE api_keys ADD COLUMN spent_micros INTEGER NOT NULL DEFAULT 0;

ALTER TABLE credit_transactions ADD COLUMN key_id TEXT;
-- What the ledger actually debited for the request (cost_micros is what its usage was worth).
ALTER TABLE usage_logs ADD COLUMN charged_micros INTEGER NOT NULL DEFAULT 0;
UPDATE usage_logs SET charged_micros = cost_micros;

CREATE TABLE credit_leases (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    -- Credit still leased: granted, not yet debited, not returned.
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    state         TEXT NOT NULL CHECK (state IN ('active', 'released', 'expired')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    ended_at      INTEGER
);
CREATE INDEX credit_leases_expiry_idx ON credit_leases (state, expires_at);
CREATE INDEX credit_leases_user_idx ON credit_leases (user_id, state);

-- Spend per key and minute, for rolling-hour caps without scanning the ledger.
CREATE TABLE spend_buckets (
    user_id      TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    minute       INTEGER NOT NULL,
    spent_micros INTEGER NOT NULL,
    PRIMARY KEY (user_id, key_id, minute)
);
