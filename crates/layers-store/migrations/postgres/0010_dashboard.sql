-- The dashboard (issue 14): calendar key limits, key rotation, expiry reminders and alerts.

ALTER TABLE api_keys ADD COLUMN limit_period text NOT NULL DEFAULT 'total'
    CHECK (limit_period IN ('total', 'day', 'week', 'month'));
ALTER TABLE api_keys ADD COLUMN previous_hash bytea;
ALTER TABLE api_keys ADD COLUMN previous_pepper_version integer;
ALTER TABLE api_keys ADD COLUMN previous_prefix text;
ALTER TABLE api_keys ADD COLUMN previous_last4 text;
ALTER TABLE api_keys ADD COLUMN previous_valid_until timestamptz;
ALTER TABLE api_keys ADD COLUMN rotated_at timestamptz;
ALTER TABLE api_keys ADD COLUMN expiry_reminded integer;
CREATE UNIQUE INDEX api_keys_previous_hash_key ON api_keys (previous_hash) WHERE previous_hash IS NOT NULL;
CREATE INDEX api_keys_expires_idx ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_keys_previous_prefix_idx ON api_keys (previous_prefix) WHERE previous_prefix IS NOT NULL;

-- Each key's spend per UTC day (Unix days), rolled up from the minute buckets by a trigger.
CREATE TABLE key_spend_days (
    user_id      uuid NOT NULL REFERENCES users (id),
    key_id       uuid NOT NULL,
    day          bigint NOT NULL,
    spent_micros bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, key_id, day)
);
CREATE INDEX key_spend_days_user_idx ON key_spend_days (user_id, day);

CREATE FUNCTION layers_roll_up_spend() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO key_spend_days AS d (user_id, key_id, day, spent_micros)
    VALUES (NEW.user_id, NEW.key_id, NEW.minute / 1440,
            NEW.spent_micros - CASE WHEN TG_OP = 'UPDATE' THEN OLD.spent_micros ELSE 0 END)
    ON CONFLICT (user_id, key_id, day) DO UPDATE SET spent_micros = d.spent_micros + excluded.spent_micros;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION layers_roll_up_spend() FROM PUBLIC;
CREATE TRIGGER spend_buckets_roll_up AFTER INSERT OR UPDATE OF spent_micros ON spend_buckets
    FOR EACH ROW EXECUTE FUNCTION layers_roll_up_spend();

CREATE TABLE alert_settings (
    user_id             uuid PRIMARY KEY REFERENCES users (id),
    low_balance_micros  bigint CHECK (low_balance_micros IS NULL OR low_balance_micros > 0),
    key_thresholds      text NOT NULL DEFAULT '',
    webhook_url         text,
    webhook_secret_enc  bytea,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE alert_firings (
    user_id   uuid NOT NULL REFERENCES users (id),
    kind      text NOT NULL,
    subject   text NOT NULL,
    period    text NOT NULL,
    threshold integer NOT NULL,
    fired_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, kind, subject, period, threshold)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['key_spend_days', 'alert_settings', 'alert_firings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY layers_app_own_rows ON %I TO layers_app '
                       'USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user())', t);
        EXECUTE format('CREATE POLICY layers_owner_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
    END LOOP;
END
$$;
GRANT SELECT ON key_spend_days TO layers_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON alert_settings TO layers_app;
GRANT SELECT, INSERT ON alert_firings TO layers_app;

-- Authentication finds a key by its current secret or, during a rotation's overlap, by the
-- secret being replaced; it returns both, the caller decides which matched.
DROP FUNCTION layers_key_for_auth(bytea);
CREATE FUNCTION layers_key_for_auth(p_hash bytea)
RETURNS TABLE (id uuid, user_id uuid, name text, env text, key_hash bytea, pepper_version integer,
               display_prefix text, last4 text, state text, spend_limit_micros bigint,
               expires_at timestamptz, created_at timestamptz, last_used_at timestamptz,
               max_credits_per_request_micros bigint, max_credits_per_hour_micros bigint,
               spent_micros bigint, limit_period text, previous_hash bytea,
               previous_pepper_version integer, previous_prefix text, previous_last4 text,
               previous_valid_until timestamptz, rotated_at timestamptz, tier text, user_status text,
               account_max_per_request_micros bigint, account_max_per_hour_micros bigint,
               account_requests_per_minute bigint, account_tokens_per_minute bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix,
           k.last4, k.state, k.spend_limit_micros, k.expires_at, k.created_at, k.last_used_at,
           k.max_credits_per_request_micros, k.max_credits_per_hour_micros, k.spent_micros,
           k.limit_period, k.previous_hash, k.previous_pepper_version, k.previous_prefix,
           k.previous_last4, k.previous_valid_until, k.rotated_at,
           u.tier, u.status, u.max_credits_per_request_micros, u.max_credits_per_hour_micros,
           u.requests_per_minute, u.tokens_per_minute
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = p_hash OR k.previous_hash = p_hash
$$;
REVOKE ALL ON FUNCTION layers_key_for_auth(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_key_for_auth(bytea) TO layers_app;

-- The reminder job: live keys of active accounts expiring within the next 8 days at most whose
-- last reminder was not the 1-day one (work for no single user; the claim itself is made under
-- the key owner's row-level security).
CREATE FUNCTION layers_keys_expiring(p_now timestamptz, p_before timestamptz)
RETURNS TABLE (id uuid, user_id uuid, name text, display_prefix text, last4 text,
               expires_at timestamptz, expiry_reminded integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT k.id, k.user_id, k.name, k.display_prefix, k.last4, k.expires_at, k.expiry_reminded
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.expires_at IS NOT NULL AND k.expires_at > p_now
      AND k.expires_at <= least(p_before, p_now + interval '8 days')
      AND (k.expiry_reminded IS NULL OR k.expiry_reminded > 1)
      AND k.state = 'active' AND u.status = 'active'
    ORDER BY k.expires_at LIMIT 1000
$$;
REVOKE ALL ON FUNCTION layers_keys_expiring(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_keys_expiring(timestamptz, timestamptz) TO layers_app;

-- Incident response also finds a key by the prefix of the secret a rotation replaced.
CREATE OR REPLACE FUNCTION layers_keys_by_prefix(p_prefix text) RETURNS TABLE (id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT id, user_id FROM api_keys WHERE display_prefix = p_prefix OR previous_prefix = p_prefix $$;
