-- The dashboard (issue 14): calendar key limits, key rotation, expiry reminders and alerts.

-- A key's spend limit resets by calendar period ('total' never resets); days are UTC.
ALTER TABLE api_keys ADD COLUMN limit_period TEXT NOT NULL DEFAULT 'total'
    CHECK (limit_period IN ('total', 'day', 'week', 'month'));
-- Rotation: the secret being replaced stays valid until previous_valid_until (ms).
ALTER TABLE api_keys ADD COLUMN previous_hash BLOB;
ALTER TABLE api_keys ADD COLUMN previous_pepper_version INTEGER;
ALTER TABLE api_keys ADD COLUMN previous_prefix TEXT;
ALTER TABLE api_keys ADD COLUMN previous_last4 TEXT;
ALTER TABLE api_keys ADD COLUMN previous_valid_until INTEGER;
ALTER TABLE api_keys ADD COLUMN rotated_at INTEGER;
-- Days before expiry of the last reminder sent (7, then 1).
ALTER TABLE api_keys ADD COLUMN expiry_reminded INTEGER;
CREATE UNIQUE INDEX api_keys_previous_hash_key ON api_keys (previous_hash) WHERE previous_hash IS NOT NULL;
CREATE INDEX api_keys_expires_idx ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_keys_previous_prefix_idx ON api_keys (previous_prefix) WHERE previous_prefix IS NOT NULL;

-- Each key's spend per UTC day (Unix days), rolled up from the minute buckets by triggers so
-- every path that records spend keeps it; calendar limits sum it from the period's first day.
CREATE TABLE key_spend_days (
    user_id      TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    day          INTEGER NOT NULL,
    spent_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, key_id, day)
);
CREATE INDEX key_spend_days_user_idx ON key_spend_days (user_id, day);

CREATE TRIGGER spend_buckets_roll_up_insert AFTER INSERT ON spend_buckets WHEN NEW.key_id <> ''
BEGIN
    INSERT INTO key_spend_days (user_id, key_id, day, spent_micros)
    VALUES (NEW.user_id, NEW.key_id, NEW.minute / 1440, NEW.spent_micros)
    ON CONFLICT (user_id, key_id, day) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros;
END;

CREATE TRIGGER spend_buckets_roll_up_update AFTER UPDATE OF spent_micros ON spend_buckets WHEN NEW.key_id <> ''
BEGIN
    INSERT INTO key_spend_days (user_id, key_id, day, spent_micros)
    VALUES (NEW.user_id, NEW.key_id, NEW.minute / 1440, NEW.spent_micros - OLD.spent_micros)
    ON CONFLICT (user_id, key_id, day) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros;
END;

-- What alerts a person asked for.
CREATE TABLE alert_settings (
    user_id             TEXT PRIMARY KEY REFERENCES users (id),
    low_balance_micros  INTEGER CHECK (low_balance_micros IS NULL OR low_balance_micros > 0),
    key_thresholds      TEXT NOT NULL DEFAULT '',
    webhook_url         TEXT,
    webhook_secret_enc  BLOB,
    updated_at          INTEGER NOT NULL
);

-- Each alert sent, once per (kind, subject, period, threshold): the primary key is what makes
-- an alert fire once, whichever node sees the crossing first.
CREATE TABLE alert_firings (
    user_id   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    period    TEXT NOT NULL,
    threshold INTEGER NOT NULL,
    fired_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind, subject, period, threshold)
);
