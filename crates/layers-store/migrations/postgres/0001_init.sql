-- Layers schema, PostgreSQL. Run by the owner role (`layers migrate`); the server works as the
-- role layers_app, which owns nothing, cannot bypass row-level security, and reaches rows of
-- other users only through the narrow SECURITY DEFINER functions at the end of this file.

DO $$
BEGIN
    CREATE ROLE layers_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The user on whose behalf the current transaction works (SET LOCAL app.user_id), or NULL.
CREATE FUNCTION layers_current_user() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    tier          text NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'starter', 'pro', 'team')),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    password_hash text,
    email_verified_at timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text NOT NULL,
    env            text NOT NULL CHECK (env IN ('live', 'test')),
    key_hash       bytea NOT NULL,
    pepper_version integer NOT NULL,
    display_prefix text NOT NULL,
    last4          text NOT NULL,
    state          text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deactivated', 'deleted')),
    spend_limit_micros bigint CHECK (spend_limit_micros IS NULL OR spend_limit_micros >= 0),
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    state_changed_at timestamptz NOT NULL,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);
CREATE INDEX api_keys_display_prefix_idx ON api_keys (display_prefix);

CREATE TABLE credit_balances (
    user_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance_micros bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE credit_transactions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('grant', 'purchase', 'subscription_grant', 'usage', 'refund', 'adjustment')),
    amount_micros   bigint NOT NULL,
    balance_after_micros bigint NOT NULL,
    idempotency_key text NOT NULL,
    reason          text,
    request_id      text,
    created_at      timestamptz NOT NULL,
    CONSTRAINT credit_transactions_idempotency_key_key UNIQUE (idempotency_key)
);
CREATE INDEX credit_transactions_user_idx ON credit_transactions (user_id, created_at);

CREATE TABLE usage_logs (
    id                uuid PRIMARY KEY,
    request_id        text NOT NULL,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id            uuid,
    model             text NOT NULL,
    provider          text NOT NULL,
    upstream_model    text NOT NULL,
    endpoint          text NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens     bigint NOT NULL,
    reasoning_tokens  bigint NOT NULL,
    images            bigint NOT NULL,
    cost_micros       bigint NOT NULL,
    latency_ms        bigint NOT NULL,
    status            integer NOT NULL,
    error_code        text,
    streamed          boolean NOT NULL,
    usage_estimated   boolean NOT NULL,
    created_at        timestamptz NOT NULL
);
CREATE INDEX usage_logs_user_idx ON usage_logs (user_id, created_at);
CREATE INDEX usage_logs_request_id_idx ON usage_logs (request_id);

CREATE TABLE audit_logs (
    id          uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    user_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    event_type  text NOT NULL,
    ip_address  inet,
    user_agent  text,
    metadata    jsonb NOT NULL DEFAULT '{}',
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical'))
);
CREATE INDEX audit_logs_user_idx ON audit_logs (user_id, created_at);
CREATE INDEX audit_logs_type_idx ON audit_logs (event_type, created_at);

CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    authenticated_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    ip_address   inet,
    user_agent   text,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE cache_events (
    id         bigserial PRIMARY KEY,
    scope      text NOT NULL CHECK (scope IN ('key', 'account')),
    key_hash   bytea,
    user_id    uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX cache_events_created_idx ON cache_events (created_at);

-- Row-level security: enabled and forced on every table. layers_app sees the rows of the user
-- named by app.user_id and nothing else; the owner (who runs migrations and owns the
-- SECURITY DEFINER functions below) keeps full access.
DO $$
DECLARE
    t text;
    col text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'api_keys', 'credit_balances', 'credit_transactions',
                             'usage_logs', 'audit_logs', 'sessions', 'cache_events'] LOOP
        col := CASE WHEN t = 'users' THEN 'id' ELSE 'user_id' END;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY layers_app_own_rows ON %I TO layers_app '
                       'USING (%I = layers_current_user()) WITH CHECK (%I = layers_current_user())',
                       t, col, col);
        EXECUTE format('CREATE POLICY layers_owner_all ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO layers_app;
GRANT SELECT, INSERT, UPDATE ON users, api_keys, credit_balances, sessions TO layers_app;
GRANT SELECT, INSERT ON credit_transactions, usage_logs, audit_logs, cache_events TO layers_app;
GRANT DELETE ON sessions TO layers_app;
GRANT USAGE ON SEQUENCE cache_events_id_seq TO layers_app;
GRANT SELECT ON _sqlx_migrations TO layers_app;

-- === System lookups: the only ways layers_app reaches rows beyond app.user_id ===

-- Authentication: the key with this hash, with its owner's tier and status.
CREATE FUNCTION layers_key_for_auth(p_hash bytea)
RETURNS TABLE (id uuid, user_id uuid, name text, env text, key_hash bytea, pepper_version integer,
               display_prefix text, last4 text, state text, spend_limit_micros bigint,
               expires_at timestamptz, created_at timestamptz, last_used_at timestamptz,
               tier text, user_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix,
           k.last4, k.state, k.spend_limit_micros, k.expires_at, k.created_at, k.last_used_at,
           u.tier, u.status
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = p_hash
$$;

-- Login and operator commands: the id of the account with this e-mail.
CREATE FUNCTION layers_user_id_by_email(p_email text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT id FROM users WHERE email = p_email $$;

-- Incident response: keys whose display prefix matches, with their owners.
CREATE FUNCTION layers_keys_by_prefix(p_prefix text) RETURNS TABLE (id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT id, user_id FROM api_keys WHERE display_prefix = p_prefix $$;

-- Cache invalidation feed, read by every node.
CREATE FUNCTION layers_cache_events_since(p_since timestamptz)
RETURNS TABLE (id bigint, scope text, key_hash bytea, user_id uuid, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT id, scope, key_hash, user_id, created_at FROM cache_events
    WHERE created_at > p_since ORDER BY id
$$;

-- Usage of many users in one batch, written by the node's usage writer. Idempotent by id.
CREATE FUNCTION layers_record_usage(p_rows jsonb) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH inserted AS (
        INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model,
                                endpoint, prompt_tokens, completion_tokens, cached_tokens,
                                reasoning_tokens, images, cost_micros, latency_ms, status,
                                error_code, streamed, usage_estimated, created_at)
        SELECT r.id, r.request_id, r.user_id, r.key_id, r.model, r.provider, r.upstream_model,
               r.endpoint, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
               r.reasoning_tokens, r.images, r.cost_micros, r.latency_ms, r.status,
               r.error_code, r.streamed, r.usage_estimated, r.created_at
        FROM jsonb_to_recordset(p_rows) AS r(
            id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
            upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, reasoning_tokens bigint, images bigint, cost_micros bigint,
            latency_ms bigint, status integer, error_code text, streamed boolean,
            usage_estimated boolean, created_at timestamptz)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
$$;

-- Last-used times of keys, batched by each node.
CREATE FUNCTION layers_touch_keys(p_ids uuid[], p_times timestamptz[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE api_keys k SET last_used_at = t.at
    FROM unnest(p_ids, p_times) AS t(id, at)
    WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at)
$$;

-- Audit events, including those of no user (failed authentication from an IP).
CREATE FUNCTION layers_record_audit(p_id uuid, p_created_at timestamptz, p_user_id uuid, p_event_type text,
                                    p_ip inet, p_user_agent text, p_metadata jsonb, p_severity text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    INSERT INTO audit_logs (id, created_at, user_id, event_type, ip_address, user_agent, metadata, severity)
    VALUES (p_id, p_created_at, p_user_id, p_event_type, p_ip, p_user_agent, p_metadata, p_severity)
$$;

-- Session cookies: the live session with this token hash.
CREATE FUNCTION layers_session_by_token_hash(p_hash bytea) RETURNS SETOF sessions
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM sessions WHERE token_hash = p_hash AND revoked_at IS NULL $$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['layers_key_for_auth(bytea)', 'layers_user_id_by_email(text)',
                             'layers_keys_by_prefix(text)', 'layers_cache_events_since(timestamptz)',
                             'layers_record_usage(jsonb)', 'layers_touch_keys(uuid[], timestamptz[])',
                             'layers_session_by_token_hash(bytea)',
                             'layers_record_audit(uuid, timestamptz, uuid, text, inet, text, jsonb, text)'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO layers_app', f);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION layers_current_user() TO layers_app;
