-- A lease that ends gives back everything it holds, and says so: its amount becomes 0 (it kept
-- the amount less what was asked back, which read as if it still held credit).
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
