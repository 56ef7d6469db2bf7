-- Usage retention (issue 16): usage rows older than the configured days are pruned (the
-- ledger, the spend roll-ups and the audit trail are kept). The server's role cannot delete
-- usage rows itself: this function deletes only rows older than the cut-off, and never rows
-- of the last 7 days (the shortest retention allowed), whatever the caller asks, in batches of
-- at most 10,000.
CREATE INDEX usage_logs_created_idx ON usage_logs (created_at);

CREATE FUNCTION layers_prune_usage(p_before timestamptz, p_limit integer) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH doomed AS (SELECT id FROM usage_logs
                    WHERE created_at < LEAST(p_before, now() - interval '7 days')
                    ORDER BY created_at LIMIT LEAST(GREATEST(COALESCE(p_limit, 0), 0), 10000)),
         gone AS (DELETE FROM usage_logs u USING doomed d WHERE u.id = d.id RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION layers_prune_usage(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_prune_usage(timestamptz, integer) TO layers_app;
