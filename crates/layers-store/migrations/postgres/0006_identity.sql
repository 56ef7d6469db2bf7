-- Accounts people sign up for themselves (SPEC §6.1): single-use links sent by e-mail
-- (confirmation, password reset, e-mail change), of which only a hash is stored.
CREATE TABLE email_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('confirm', 'reset', 'change_email')),
    new_email  text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);

ALTER TABLE email_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY layers_app_own_rows ON email_tokens TO layers_app
    USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user());
DO $$ BEGIN
    EXECUTE format('CREATE POLICY layers_owner_all ON email_tokens TO %I USING (true) WITH CHECK (true)', current_user);
END $$;
GRANT SELECT, INSERT, UPDATE ON email_tokens TO layers_app;

-- A link from an e-mail: the token with this hash and purpose, used now, once. The person who
-- clicks it has no session yet, so this is a system lookup, like a session cookie's.
CREATE FUNCTION layers_use_email_token(p_hash bytea, p_purpose text, p_now timestamptz) RETURNS SETOF email_tokens
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE email_tokens SET used_at = p_now
    WHERE token_hash = p_hash AND purpose = p_purpose AND used_at IS NULL AND expires_at > p_now
    RETURNING *
$$;
REVOKE ALL ON FUNCTION layers_use_email_token(bytea, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_use_email_token(bytea, text, timestamptz) TO layers_app;
