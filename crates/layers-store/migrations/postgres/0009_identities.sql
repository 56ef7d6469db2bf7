-- Sign-in with an identity provider (OpenID Connect): an identity is its issuer and subject.
CREATE TABLE identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_user_idx ON identities (user_id);

ALTER TABLE identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE identities FORCE ROW LEVEL SECURITY;
CREATE POLICY layers_app_own_rows ON identities TO layers_app
    USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user());
DO $$ BEGIN
    EXECUTE format('CREATE POLICY layers_owner_all ON identities TO %I USING (true) WITH CHECK (true)', current_user);
END $$;
GRANT SELECT, INSERT, DELETE ON identities TO layers_app;

-- The account of an identity: the person signing in has no session yet (a system lookup).
CREATE FUNCTION layers_user_by_identity(p_issuer text, p_subject text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT user_id FROM identities WHERE issuer = p_issuer AND subject = p_subject $$;
REVOKE ALL ON FUNCTION layers_user_by_identity(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_user_by_identity(text, text) TO layers_app;

-- An erased account's identities go with its personal data; and the function erases only the
-- account the transaction acts for (app.user_id), never another.
CREATE OR REPLACE FUNCTION layers_erase_personal_data(p_user uuid, p_at timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    IF p_user IS DISTINCT FROM layers_current_user() THEN
        RAISE EXCEPTION 'an account can only erase itself' USING ERRCODE = '42501';
    END IF;
    UPDATE users SET email = 'deleted+' || p_user::text || '@deleted.invalid', password_hash = NULL,
                     email_verified_at = NULL, status = 'suspended', updated_at = p_at
    WHERE id = p_user;
    DELETE FROM sessions WHERE user_id = p_user;
    DELETE FROM email_tokens WHERE user_id = p_user;
    DELETE FROM recovery_codes WHERE user_id = p_user;
    DELETE FROM two_factor WHERE user_id = p_user;
    DELETE FROM identities WHERE user_id = p_user;
    UPDATE audit_logs SET ip_address = NULL, user_agent = NULL WHERE user_id = p_user;
    INSERT INTO cache_events (scope, user_id) VALUES ('account', p_user);
END
$$;
