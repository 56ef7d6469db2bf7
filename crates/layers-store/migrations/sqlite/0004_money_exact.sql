-- Money exact (issue 11). Usage rows carry every quantity and rate their cost came from, so a
-- row's cost can be recomputed from the row alone, plus the hold and what was not charged.
ALTER TABLE usage_logs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN held_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN shortfall_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN fees_micros INTEGER NOT NULL DEFAULT 0;
-- The rates charged, in micro-credits per million tokens (rate_image: per image).
ALTER TABLE usage_logs ADD COLUMN rate_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN rate_output INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN rate_cached_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN rate_cache_write INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN rate_image INTEGER NOT NULL DEFAULT 0;
CREATE INDEX usage_logs_request_idx ON usage_logs (user_id, request_id);

-- Reclaiming credit stranded in other leases: an account's reclaim asks every lease to give
-- back its free credit; each lease records the latest reclaim it answered.
ALTER TABLE credit_balances ADD COLUMN reclaim_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_leases ADD COLUMN reclaim_epoch INTEGER NOT NULL DEFAULT 0;

-- The change feed also carries reclaims ('credit', with the reclaim's epoch).
CREATE TABLE cache_events_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL CHECK (scope IN ('key', 'account', 'credit')),
    key_hash   BLOB,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reclaim_epoch INTEGER
);
INSERT INTO cache_events_new (id, scope, key_hash, user_id, created_at)
    SELECT id, scope, key_hash, user_id, created_at FROM cache_events;
DROP TABLE cache_events;
ALTER TABLE cache_events_new RENAME TO cache_events;
CREATE INDEX cache_events_created_idx ON cache_events (created_at);
