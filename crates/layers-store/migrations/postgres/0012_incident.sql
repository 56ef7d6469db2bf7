-- The incident toolkit (issue 16): operator commands that act across accounts, each through a
-- narrow SECURITY DEFINER function (the server's role still reads and writes one account at a
-- time under row-level security).

-- The account a key id belongs to (then read under that account's RLS).
CREATE FUNCTION layers_key_owner(p_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT user_id FROM api_keys WHERE id = p_id $$;

-- Keys not yet re-issued after a pepper rotation (hashed under an older pepper version).
CREATE FUNCTION layers_keys_on_old_pepper(p_current integer) RETURNS TABLE (id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT id, user_id FROM api_keys WHERE state <> 'deleted' AND pepper_version < p_current $$;

-- "Log out everyone": ends every live session of every account.
CREATE FUNCTION layers_revoke_every_session(p_at timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH ended AS (UPDATE sessions SET revoked_at = p_at WHERE revoked_at IS NULL RETURNING 1)
    SELECT count(*) FROM ended
$$;

DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['layers_key_owner(uuid)', 'layers_keys_on_old_pepper(integer)',
                             'layers_revoke_every_session(timestamptz)'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO layers_app', f);
    END LOOP;
END
$$;
