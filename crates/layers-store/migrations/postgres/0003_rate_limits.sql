-- Per-account overrides of the tier's rate limits (issue 5).
ALTER TABLE users ADD COLUMN requests_per_minute bigint CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0);
ALTER TABLE users ADD COLUMN tokens_per_minute bigint CHECK (tokens_per_minute IS NULL OR tokens_per_minute >= 0);

-- Authentication also returns the account's rate-limit overrides.
DROP FUNCTION layers_key_for_auth(bytea);
CREATE FUNCTION layers_key_for_auth(p_hash bytea)
RETURNS TABLE (id uuid, user_id uuid, name text, env text, key_hash bytea, pepper_version integer,
               display_prefix text, last4 text, state text, spend_limit_micros bigint,
               expires_at timestamptz, created_at timestamptz, last_used_at timestamptz,
               max_credits_per_request_micros bigint, max_credits_per_hour_micros bigint,
               spent_micros bigint, tier text, user_status text,
               account_max_per_request_micros bigint, account_max_per_hour_micros bigint,
               account_requests_per_minute bigint, account_tokens_per_minute bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix,
           k.last4, k.state, k.spend_limit_micros, k.expires_at, k.created_at, k.last_used_at,
           k.max_credits_per_request_micros, k.max_credits_per_hour_micros, k.spent_micros,
           u.tier, u.status, u.max_credits_per_request_micros, u.max_credits_per_hour_micros,
           u.requests_per_minute, u.tokens_per_minute
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = p_hash
$$;
REVOKE ALL ON FUNCTION layers_key_for_auth(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_key_for_auth(bytea) TO layers_app;

-- Events of no account (failed authentications, IP blocks) for the operator: row-level security
-- hides them from the app role otherwise. Only user-less rows, newest first.
CREATE FUNCTION layers_system_audit(p_event_type text, p_limit integer) RETURNS SETOF audit_logs
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT * FROM audit_logs
    WHERE user_id IS NULL AND (p_event_type IS NULL OR event_type = p_event_type)
    ORDER BY created_at DESC, id DESC LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION layers_system_audit(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_system_audit(text, integer) TO layers_app;
