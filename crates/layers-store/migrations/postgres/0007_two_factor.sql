-- Two-factor login (TOTP, RFC 6238): the secret, encrypted by the server, pending until the
-- first code confirms it; the last step used (no code works twice); single-use recovery codes,
-- of which only hashes are stored.
CREATE TABLE two_factor (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_enc bytea NOT NULL,
    created_at timestamptz NOT NULL,
    enabled_at timestamptz,
    last_step  bigint
);

CREATE TABLE recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['two_factor', 'recovery_codes'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY layers_app_own_rows ON %I TO layers_app '
                       'USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user())', t);
        EXECUTE format('CREATE POLICY layers_owner_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON two_factor, recovery_codes TO layers_app;
