-- Leases and settlement, after review: an ended lease holds nothing (its amount becomes 0, as it
-- gave everything back), and every path locks balances, leases, keys in id order.
CREATE OR REPLACE FUNCTION layers_return_leases(p_users uuid[], p_leases uuid[], p_amounts bigint[], p_end boolean[],
                                                p_epochs bigint[])
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM credit_balances b WHERE b.user_id = ANY (p_users) ORDER BY b.user_id FOR UPDATE;
    PERFORM 1 FROM credit_leases l WHERE l.id = ANY (p_leases) ORDER BY l.id FOR UPDATE;
    RETURN QUERY
    WITH req AS (
        SELECT * FROM unnest(p_users, p_leases, p_amounts, p_end, p_epochs) AS r(user_id, id, amount, ends, epoch)
    ), cur AS (
        SELECT l.id, l.user_id, l.amount_micros AS old, least(greatest(r.amount, 0), l.amount_micros) AS back,
               r.ends, r.epoch
        FROM credit_leases l JOIN req r ON l.id = r.id AND l.user_id = r.user_id
        WHERE l.state = 'active'
    ), changed AS (
        UPDATE credit_leases l
        SET amount_micros = CASE WHEN c.ends THEN 0 ELSE c.old - c.back END,
            state = CASE WHEN c.ends THEN 'released' ELSE l.state END,
            ended_at = CASE WHEN c.ends THEN now() ELSE l.ended_at END,
            reclaim_epoch = greatest(l.reclaim_epoch, coalesce(c.epoch, 0))
        FROM cur c WHERE l.id = c.id
        RETURNING l.id, l.user_id, CASE WHEN c.ends THEN c.old ELSE c.back END AS released
    ), per_user AS (
        SELECT c.user_id, sum(c.released) AS total FROM changed c GROUP BY c.user_id
    ), moved AS (
        UPDATE credit_balances b SET leased_micros = greatest(0, b.leased_micros - p.total), updated_at = now()
        FROM per_user p WHERE b.user_id = p.user_id
        RETURNING 1
    )
    SELECT c.id FROM changed c;
END
$$;

-- Settlement locks what it changes in one order, the order of every path here: balances, then
-- leases, then keys, each by id (an UPDATE ... FROM locks in whatever order its join produces,
-- which could deadlock against layers_touch_keys).
DROP FUNCTION layers_settle_prepare(uuid[], uuid[], uuid[]);
CREATE FUNCTION layers_settle_prepare(p_users uuid[], p_leases uuid[], p_keys uuid[], p_ids uuid[])
RETURNS TABLE (kind text, id uuid, amount bigint, active boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT 'balance', b.user_id, b.balance_micros, true FROM credit_balances b
    WHERE b.user_id = ANY (p_users) ORDER BY b.user_id FOR UPDATE;
    RETURN QUERY
    SELECT 'lease', l.id, l.amount_micros, l.state = 'active' FROM credit_leases l
    WHERE l.id = ANY (p_leases) ORDER BY l.id FOR UPDATE;
    PERFORM 1 FROM api_keys k WHERE k.id = ANY (p_keys) ORDER BY k.id FOR UPDATE;
    RETURN QUERY
    SELECT 'usage', u.id, NULL::bigint, NULL::boolean FROM usage_logs u WHERE u.id = ANY (p_ids);
END
$$;
REVOKE ALL ON FUNCTION layers_settle_prepare(uuid[], uuid[], uuid[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_settle_prepare(uuid[], uuid[], uuid[], uuid[]) TO layers_app;

-- Renewal locks the leases it extends by id first, like settlement and the reaper.
CREATE OR REPLACE FUNCTION layers_renew_leases(p_node uuid, p_ids uuid[], p_ttl_ms bigint) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM credit_leases l WHERE l.id = ANY (p_ids) AND l.node_id = p_node AND l.state = 'active'
    ORDER BY l.id FOR UPDATE;
    RETURN QUERY
    UPDATE credit_leases SET expires_at = now() + p_ttl_ms * interval '1 millisecond'
    WHERE id = ANY (p_ids) AND node_id = p_node AND state = 'active'
    RETURNING id;
END
$$;
