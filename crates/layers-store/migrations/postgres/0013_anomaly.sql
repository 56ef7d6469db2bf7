-- Anomaly rules (issue 16): a usage spike holds the account to a lower rate limit for a while;
-- the account's own override is kept here and put back when the hold ends.
CREATE TABLE anomaly_holds (
    user_id      uuid PRIMARY KEY REFERENCES users (id),
    previous_rpm bigint,
    -- What the hold set: the release puts `previous_rpm` back only while this is still in force
    -- (an operator's change during the hold stays).
    held_rpm     bigint NOT NULL,
    until        timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
ALTER TABLE anomaly_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE anomaly_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY layers_app_own_rows ON anomaly_holds TO layers_app
    USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user());
DO $$ BEGIN EXECUTE format('CREATE POLICY layers_owner_all ON anomaly_holds TO %I USING (true) WITH CHECK (true)', current_user); END $$;
GRANT SELECT, INSERT, UPDATE ON anomaly_holds TO layers_app;

-- Ends every hold whose time is up by the database's clock (a caller cannot lift holds early):
-- the account's own rate override comes back unless an operator changed it meanwhile, and
-- every node hears of it through the change feed. Work for no single user; one node does each.
CREATE FUNCTION layers_release_anomaly_holds() RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE h record;
BEGIN
    FOR h IN DELETE FROM anomaly_holds WHERE until <= now() RETURNING user_id, previous_rpm, held_rpm LOOP
        UPDATE users SET requests_per_minute = h.previous_rpm, updated_at = now()
        WHERE id = h.user_id AND requests_per_minute IS NOT DISTINCT FROM h.held_rpm;
        INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('account', NULL, h.user_id);
        RETURN NEXT h.user_id;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION layers_release_anomaly_holds() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_release_anomaly_holds() TO layers_app;
