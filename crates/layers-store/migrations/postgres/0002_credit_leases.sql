-- Credit holds and settlement (issue 4). Each node leases credit per key from the balance and
-- holds/settles against it in memory; settlements debit the ledger in batches.

ALTER TABLE credit_balances ADD COLUMN leased_micros bigint NOT NULL DEFAULT 0 CHECK (leased_micros >= 0);

ALTER TABLE users ADD COLUMN max_credits_per_request_micros bigint;
ALTER TABLE users ADD COLUMN max_credits_per_hour_micros bigint;
ALTER TABLE api_keys ADD COLUMN max_credits_per_request_micros bigint;
ALTER TABLE api_keys ADD COLUMN max_credits_per_hour_micros bigint;
ALTER TABLE api_keys ADD COLUMN spent_micros bigint NOT NULL DEFAULT 0;

ALTER TABLE credit_transactions ADD COLUMN key_id uuid;
ALTER TABLE usage_logs ADD COLUMN charged_micros bigint NOT NULL DEFAULT 0;
UPDATE usage_logs SET charged_micros = cost_micros;

CREATE TABLE credit_leases (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id        uuid NOT NULL,
    node_id       uuid NOT NULL,
    amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
    state         text NOT NULL CHECK (state IN ('active', 'released', 'expired')),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz
);
CREATE INDEX credit_leases_expiry_idx ON credit_leases (state, expires_at);
CREATE INDEX credit_leases_user_idx ON credit_leases (user_id, state);

CREATE TABLE spend_buckets (
    user_id      uuid NOT NULL,
    key_id       uuid NOT NULL,
    minute       bigint NOT NULL,
    spent_micros bigint NOT NULL,
    PRIMARY KEY (user_id, key_id, minute)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['credit_leases', 'spend_buckets'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY layers_app_own_rows ON %I TO layers_app '
                       'USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user())', t);
        EXECUTE format('CREATE POLICY layers_owner_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON credit_leases, spend_buckets TO layers_app;

-- Authentication now also returns the spend caps of the key and its account.
DROP FUNCTION layers_key_for_auth(bytea);
CREATE FUNCTION layers_key_for_auth(p_hash bytea)
RETURNS TABLE (id uuid, user_id uuid, name text, env text, key_hash bytea, pepper_version integer,
               display_prefix text, last4 text, state text, spend_limit_micros bigint,
               expires_at timestamptz, created_at timestamptz, last_used_at timestamptz,
               max_credits_per_request_micros bigint, max_credits_per_hour_micros bigint,
               spent_micros bigint, tier text, user_status text,
               account_max_per_request_micros bigint, account_max_per_hour_micros bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix,
           k.last4, k.state, k.spend_limit_micros, k.expires_at, k.created_at, k.last_used_at,
           k.max_credits_per_request_micros, k.max_credits_per_hour_micros, k.spent_micros,
           u.tier, u.status, u.max_credits_per_request_micros, u.max_credits_per_hour_micros
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = p_hash
$$;
REVOKE ALL ON FUNCTION layers_key_for_auth(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_key_for_auth(bytea) TO layers_app;

-- Settlement of a batch of requests of any users: one usage row each and, for those that cost
-- something, one ledger debit. `charged_micros` is drawn from the node's lease; `overage_micros`
-- (a cost beyond what the lease covered) from what the balance still has beyond every lease.
-- Idempotent by usage id; a charge against a lease the reaper already ended is refused
-- ('refused'), never applied; no balance goes below zero. Locks: balances, then leases, then
-- keys, each in id order (the order every function here uses).
CREATE FUNCTION layers_settle(p_rows jsonb)
RETURNS TABLE (usage_id uuid, outcome text, charged_micros bigint, balance_after_micros bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    v_row record;
    v_balance bigint;
    v_leased bigint;
    v_part bigint;
    v_extra bigint;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS layers_settle_in (
        ord int, id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
        upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
        cached_tokens bigint, reasoning_tokens bigint, images bigint, cost_micros bigint,
        charged_micros bigint, overage_micros bigint, latency_ms bigint, status integer,
        error_code text, streamed boolean, usage_estimated boolean, created_at timestamptz,
        lease_id uuid, outcome text, final_micros bigint, balance_after bigint
    ) ON COMMIT DROP;
    INSERT INTO layers_settle_in
    SELECT r.ord, r.id, r.request_id, r.user_id, r.key_id, r.model, r.provider, r.upstream_model,
           r.endpoint, r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.reasoning_tokens,
           r.images, r.cost_micros, greatest(r.charged_micros, 0), greatest(coalesce(r.overage_micros, 0), 0),
           r.latency_ms, r.status, r.error_code, r.streamed, r.usage_estimated, r.created_at,
           r.lease_id, 'applied', 0, NULL
    FROM jsonb_to_recordset(p_rows) AS r(
        ord int, id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
        upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
        cached_tokens bigint, reasoning_tokens bigint, images bigint, cost_micros bigint,
        charged_micros bigint, overage_micros bigint, latency_ms bigint, status integer,
        error_code text, streamed boolean, usage_estimated boolean, created_at timestamptz,
        lease_id uuid);

    -- Already settled (a retried flush), or twice in this batch.
    UPDATE layers_settle_in i SET outcome = 'duplicate'
    WHERE EXISTS (SELECT 1 FROM usage_logs u WHERE u.id = i.id)
       OR EXISTS (SELECT 1 FROM layers_settle_in j WHERE j.id = i.id AND j.ord < i.ord);

    PERFORM 1 FROM credit_balances b
    WHERE b.user_id IN (SELECT i.user_id FROM layers_settle_in i
                        WHERE i.outcome = 'applied' AND (i.charged_micros > 0 OR i.overage_micros > 0))
    ORDER BY b.user_id FOR UPDATE;
    PERFORM 1 FROM credit_leases l
    WHERE l.id IN (SELECT i.lease_id FROM layers_settle_in i WHERE i.outcome = 'applied' AND i.charged_micros > 0)
    ORDER BY l.id FOR UPDATE;
    PERFORM 1 FROM api_keys k
    WHERE k.id IN (SELECT i.key_id FROM layers_settle_in i
                   WHERE i.outcome = 'applied' AND (i.charged_micros > 0 OR i.overage_micros > 0))
    ORDER BY k.id FOR UPDATE;

    -- A charge against a lease that is no longer active (reaped after its node stalled) is refused.
    UPDATE layers_settle_in i SET outcome = 'refused'
    WHERE i.outcome = 'applied' AND i.charged_micros > 0
      AND NOT EXISTS (SELECT 1 FROM credit_leases l WHERE l.id = i.lease_id AND l.state = 'active');

    -- Rows drawn only from leases, set-wise. Charges are capped at the balance, in order.
    WITH ordered AS (
        SELECT i.ord, b.balance_micros AS start,
               sum(i.charged_micros) OVER (PARTITION BY i.user_id ORDER BY i.ord) - i.charged_micros AS before
        FROM layers_settle_in i JOIN credit_balances b ON b.user_id = i.user_id
        WHERE i.outcome = 'applied' AND i.charged_micros > 0 AND i.overage_micros = 0
    )
    UPDATE layers_settle_in i
    SET final_micros = greatest(0, least(i.charged_micros, o.start - o.before))
    FROM ordered o WHERE o.ord = i.ord;

    WITH running AS (
        SELECT i.ord, b.balance_micros - sum(i.final_micros) OVER (PARTITION BY i.user_id ORDER BY i.ord) AS after
        FROM layers_settle_in i JOIN credit_balances b ON b.user_id = i.user_id
        WHERE i.outcome = 'applied' AND i.charged_micros > 0 AND i.overage_micros = 0
    )
    UPDATE layers_settle_in i SET balance_after = r.after FROM running r WHERE r.ord = i.ord;

    UPDATE credit_balances b
    SET balance_micros = b.balance_micros - s.total,
        leased_micros = greatest(0, b.leased_micros - s.leased),
        updated_at = now()
    FROM (SELECT i.user_id, sum(i.final_micros) AS total, sum(i.charged_micros) AS leased
          FROM layers_settle_in i WHERE i.outcome = 'applied' AND i.charged_micros > 0 AND i.overage_micros = 0
          GROUP BY i.user_id) s
    WHERE b.user_id = s.user_id;

    -- Rows with an overage (rare: the upstream cost more than was held), one by one, after the
    -- others: the overage takes only what no lease holds.
    FOR v_row IN SELECT * FROM layers_settle_in i
             WHERE i.outcome = 'applied' AND i.overage_micros > 0 ORDER BY i.ord LOOP
        SELECT b.balance_micros, b.leased_micros INTO v_balance, v_leased
        FROM credit_balances b WHERE b.user_id = v_row.user_id;
        v_part := greatest(0, least(v_row.charged_micros, v_balance));
        v_extra := greatest(0, least(v_row.overage_micros, (v_balance - v_part) - (v_leased - v_row.charged_micros)));
        UPDATE credit_balances SET balance_micros = balance_micros - v_part - v_extra,
                                   leased_micros = greatest(0, leased_micros - v_row.charged_micros),
                                   updated_at = now()
        WHERE user_id = v_row.user_id;
        UPDATE layers_settle_in SET final_micros = v_part + v_extra,
                                    balance_after = v_balance - v_part - v_extra
        WHERE ord = v_row.ord;
    END LOOP;

    INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros,
                                     idempotency_key, reason, request_id, created_at, key_id)
    SELECT i.id, i.user_id, 'usage', -i.final_micros, i.balance_after, 'usage:' || i.id, NULL,
           i.request_id, i.created_at, i.key_id
    FROM layers_settle_in i WHERE i.outcome = 'applied' AND i.final_micros > 0;

    UPDATE credit_leases l SET amount_micros = greatest(0, l.amount_micros - s.total)
    FROM (SELECT i.lease_id, sum(i.charged_micros) AS total FROM layers_settle_in i
          WHERE i.outcome = 'applied' AND i.charged_micros > 0 GROUP BY i.lease_id) s
    WHERE l.id = s.lease_id;

    UPDATE api_keys k SET spent_micros = k.spent_micros + s.total
    FROM (SELECT i.key_id, sum(i.final_micros) AS total FROM layers_settle_in i
          WHERE i.outcome = 'applied' AND i.final_micros > 0 GROUP BY i.key_id) s
    WHERE k.id = s.key_id;

    INSERT INTO spend_buckets AS sb (user_id, key_id, minute, spent_micros)
    SELECT i.user_id, i.key_id, (extract(epoch FROM i.created_at)::bigint / 60), sum(i.final_micros)
    FROM layers_settle_in i WHERE i.outcome = 'applied' AND i.final_micros > 0
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (user_id, key_id, minute) DO UPDATE SET spent_micros = sb.spent_micros + excluded.spent_micros;

    INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model,
                            endpoint, prompt_tokens, completion_tokens, cached_tokens,
                            reasoning_tokens, images, cost_micros, latency_ms, status,
                            error_code, streamed, usage_estimated, created_at, charged_micros)
    SELECT i.id, i.request_id, i.user_id, i.key_id, i.model, i.provider, i.upstream_model,
           i.endpoint, i.prompt_tokens, i.completion_tokens, i.cached_tokens, i.reasoning_tokens,
           i.images, i.cost_micros, i.latency_ms, i.status, i.error_code, i.streamed,
           i.usage_estimated, i.created_at, i.final_micros
    FROM layers_settle_in i WHERE i.outcome <> 'duplicate'
    ON CONFLICT (id) DO NOTHING;

    RETURN QUERY SELECT i.id, i.outcome, i.final_micros, i.balance_after FROM layers_settle_in i ORDER BY i.ord;
END
$$;
REVOKE ALL ON FUNCTION layers_settle(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_settle(jsonb) TO layers_app;

-- Leases of nodes that stopped renewing them (by the database's clock): return the credit, mark
-- them expired. Run by every node's reaper and by `layers admin leases reap`; idempotent.
CREATE FUNCTION layers_reap_leases()
RETURNS TABLE (leases bigint, micros bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM credit_balances b
    WHERE b.user_id IN (SELECT l.user_id FROM credit_leases l WHERE l.state = 'active' AND l.expires_at < now())
    ORDER BY b.user_id FOR UPDATE;
    RETURN QUERY
    WITH expired AS (
        UPDATE credit_leases l SET state = 'expired', ended_at = now()
        WHERE l.state = 'active' AND l.expires_at < now()
        RETURNING l.user_id, l.amount_micros
    ), per_user AS (
        SELECT e.user_id, sum(e.amount_micros) AS total, count(*) AS n FROM expired e GROUP BY e.user_id
    ), returned AS (
        UPDATE credit_balances b SET leased_micros = greatest(0, b.leased_micros - p.total), updated_at = now()
        FROM per_user p WHERE b.user_id = p.user_id
        RETURNING p.n, p.total
    )
    SELECT coalesce(sum(r.n), 0)::bigint, coalesce(sum(r.total), 0)::bigint FROM returned r;
    DELETE FROM spend_buckets WHERE minute < (extract(epoch FROM now())::bigint / 60) - 120;
END
$$;
REVOKE ALL ON FUNCTION layers_reap_leases() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_reap_leases() TO layers_app;

-- Renewal of a node's leases (one call for all of them), by the database's clock.
CREATE FUNCTION layers_renew_leases(p_node uuid, p_ids uuid[], p_ttl_ms bigint) RETURNS SETOF uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE credit_leases SET expires_at = now() + p_ttl_ms * interval '1 millisecond'
    WHERE id = ANY (p_ids) AND node_id = p_node AND state = 'active'
    RETURNING id
$$;
REVOKE ALL ON FUNCTION layers_renew_leases(uuid, uuid[], bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_renew_leases(uuid, uuid[], bigint) TO layers_app;

-- Leases more credit for one key to one node: at least p_min and at most p_want, within the
-- balance (minus every node's leases) and the caps, and at most a quarter of the room left so
-- one busy node or key cannot strand the rest. Runs as the caller, under row-level security,
-- inside a transaction that names the user.
CREATE FUNCTION layers_acquire_lease(p_lease uuid, p_user uuid, p_key uuid, p_node uuid, p_min bigint,
                                     p_want bigint, p_account_hour_cap bigint, p_key_hour_cap bigint,
                                     p_key_total_cap bigint, p_ttl_ms bigint)
RETURNS TABLE (granted bigint, balance bigint, available bigint, account_hour_room bigint,
               key_hour_room bigint, key_total_room bigint, lease_ended boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp
AS $$
DECLARE
    v_balance bigint;
    v_leased bigint;
    v_room bigint;
    v_limit bigint;
    v_ahr bigint;
    v_khr bigint;
    v_ktr bigint;
    v_key_leases bigint;
    v_grant bigint;
    v_rows bigint;
    v_minute bigint := extract(epoch FROM now())::bigint / 60;
BEGIN
    SELECT b.balance_micros, b.leased_micros INTO v_balance, v_leased
    FROM credit_balances b WHERE b.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no credit balance for this account' USING ERRCODE = 'P0002';
    END IF;
    v_room := greatest(0, v_balance - v_leased);
    SELECT coalesce(sum(l.amount_micros), 0) INTO v_key_leases
    FROM credit_leases l WHERE l.user_id = p_user AND l.key_id = p_key AND l.state = 'active';
    -- The rolling hour is the last 61 minute buckets: never less than an hour.
    IF p_account_hour_cap IS NOT NULL THEN
        v_ahr := greatest(0, p_account_hour_cap - v_leased - coalesce((
            SELECT sum(s.spent_micros) FROM spend_buckets s
            WHERE s.user_id = p_user AND s.minute >= v_minute - 60), 0));
    END IF;
    IF p_key_hour_cap IS NOT NULL THEN
        v_khr := greatest(0, p_key_hour_cap - v_key_leases - coalesce((
            SELECT sum(s.spent_micros) FROM spend_buckets s
            WHERE s.user_id = p_user AND s.key_id = p_key AND s.minute >= v_minute - 60), 0));
    END IF;
    IF p_key_total_cap IS NOT NULL THEN
        v_ktr := greatest(0, p_key_total_cap - v_key_leases
                             - coalesce((SELECT k.spent_micros FROM api_keys k WHERE k.id = p_key), 0));
    END IF;
    v_limit := least(v_room, coalesce(v_ahr, v_room), coalesce(v_khr, v_room), coalesce(v_ktr, v_room));
    IF v_limit < p_min OR v_limit <= 0 THEN
        RETURN QUERY SELECT 0::bigint, v_balance, v_room, v_ahr, v_khr, v_ktr, false;
        RETURN;
    END IF;
    v_grant := least(p_want, greatest(p_min, v_limit / 4));
    INSERT INTO credit_leases AS l (id, user_id, key_id, node_id, amount_micros, state, created_at, expires_at)
    VALUES (p_lease, p_user, p_key, p_node, v_grant, 'active', now(), now() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (id) DO UPDATE SET amount_micros = l.amount_micros + excluded.amount_micros,
                                   expires_at = excluded.expires_at
    WHERE l.state = 'active';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        -- The reaper ended this lease while its node was away; the node starts a new one.
        RETURN QUERY SELECT 0::bigint, v_balance, v_room, v_ahr, v_khr, v_ktr, true;
        RETURN;
    END IF;
    UPDATE credit_balances SET leased_micros = leased_micros + v_grant WHERE user_id = p_user;
    RETURN QUERY SELECT v_grant, v_balance, v_room, v_ahr, v_khr, v_ktr, false;
END
$$;
GRANT EXECUTE ON FUNCTION layers_acquire_lease(uuid, uuid, uuid, uuid, bigint, bigint, bigint, bigint, bigint, bigint)
    TO layers_app;

-- Last-used times, locking keys in id order like settlement does.
CREATE OR REPLACE FUNCTION layers_touch_keys(p_ids uuid[], p_times timestamptz[]) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM api_keys k WHERE k.id = ANY (p_ids) ORDER BY k.id FOR UPDATE;
    UPDATE api_keys k SET last_used_at = t.at
    FROM unnest(p_ids, p_times) AS t(id, at)
    WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at);
END
$$;

-- Usage rows written outside settlement carry what was charged too.
DROP FUNCTION layers_record_usage(jsonb);
CREATE FUNCTION layers_record_usage(p_rows jsonb) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH inserted AS (
        INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model,
                                endpoint, prompt_tokens, completion_tokens, cached_tokens,
                                reasoning_tokens, images, cost_micros, latency_ms, status,
                                error_code, streamed, usage_estimated, created_at, charged_micros)
        SELECT r.id, r.request_id, r.user_id, r.key_id, r.model, r.provider, r.upstream_model,
               r.endpoint, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
               r.reasoning_tokens, r.images, r.cost_micros, r.latency_ms, r.status,
               r.error_code, r.streamed, r.usage_estimated, r.created_at, r.charged_micros
        FROM jsonb_to_recordset(p_rows) AS r(
            id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
            upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, reasoning_tokens bigint, images bigint, cost_micros bigint,
            latency_ms bigint, status integer, error_code text, streamed boolean,
            usage_estimated boolean, created_at timestamptz, charged_micros bigint)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
$$;
REVOKE ALL ON FUNCTION layers_record_usage(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_record_usage(jsonb) TO layers_app;
