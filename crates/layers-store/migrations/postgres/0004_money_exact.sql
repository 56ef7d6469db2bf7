-- Money exact (issue 11). The money rules now live in one place (layers-domain): the node
-- decides each charge in memory and the store applies it from the lease that held it, or
-- refuses it when that lease has ended. Leases are granted by the same Rust rule on both
-- backends, so the PL/pgSQL copies of the rules go.

-- Usage rows carry every quantity and rate their cost came from, plus the hold and what was
-- not charged, so a row's cost can be recomputed from the row alone.
ALTER TABLE usage_logs
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN held_micros bigint NOT NULL DEFAULT 0,
    ADD COLUMN shortfall_micros bigint NOT NULL DEFAULT 0,
    ADD COLUMN fees_micros bigint NOT NULL DEFAULT 0,
    -- The rates charged, in micro-credits per million tokens (rate_image: per image).
    ADD COLUMN rate_input bigint NOT NULL DEFAULT 0,
    ADD COLUMN rate_output bigint NOT NULL DEFAULT 0,
    ADD COLUMN rate_cached_input bigint NOT NULL DEFAULT 0,
    ADD COLUMN rate_cache_write bigint NOT NULL DEFAULT 0,
    ADD COLUMN rate_image bigint NOT NULL DEFAULT 0;
CREATE INDEX usage_logs_request_idx ON usage_logs (user_id, request_id);

-- Reclaiming credit stranded in other leases: an account's reclaim asks every lease to give
-- back its free credit; each lease records the latest reclaim it answered.
ALTER TABLE credit_balances ADD COLUMN reclaim_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE credit_leases ADD COLUMN reclaim_epoch bigint NOT NULL DEFAULT 0;

-- The change feed also carries reclaims ('credit', with the reclaim's epoch).
ALTER TABLE cache_events DROP CONSTRAINT cache_events_scope_check;
ALTER TABLE cache_events ADD CONSTRAINT cache_events_scope_check CHECK (scope IN ('key', 'account', 'credit'));
ALTER TABLE cache_events ADD COLUMN reclaim_epoch bigint;
DROP FUNCTION layers_cache_events_since(timestamptz);
CREATE FUNCTION layers_cache_events_since(p_since timestamptz)
RETURNS TABLE (id bigint, scope text, key_hash bytea, user_id uuid, created_at timestamptz, reclaim_epoch bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT id, scope, key_hash, user_id, created_at, reclaim_epoch FROM cache_events
    WHERE created_at > p_since ORDER BY id
$$;
REVOKE ALL ON FUNCTION layers_cache_events_since(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_cache_events_since(timestamptz) TO layers_app;

DROP FUNCTION layers_settle(jsonb);
DROP FUNCTION layers_acquire_lease(uuid, uuid, uuid, uuid, bigint, bigint, bigint, bigint, bigint, bigint);

-- Settlement, step 1: lock what a batch changes (balances, then leases, in id order, the order
-- every path here takes) and read it: balances, lease states, usage ids already recorded.
CREATE FUNCTION layers_settle_prepare(p_users uuid[], p_leases uuid[], p_ids uuid[])
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
    RETURN QUERY
    SELECT 'usage', u.id, NULL::bigint, NULL::boolean FROM usage_logs u WHERE u.id = ANY (p_ids);
END
$$;

-- Settlement, step 2, in the same transaction: write what layers-domain decided from step 1.
-- Usage rows (each column an array, one element per row), ledger debits, and the counters
-- each moved once per batch: balances and leased credit, leases, keys' spend, spend buckets.
CREATE FUNCTION layers_settle_write(
    u_id uuid[], u_request_id text[], u_user uuid[], u_key uuid[], u_model text[], u_provider text[],
    u_upstream_model text[], u_endpoint text[], u_prompt bigint[], u_completion bigint[],
    u_cached bigint[], u_cache_write bigint[], u_reasoning bigint[], u_images bigint[],
    u_cost bigint[], u_charged bigint[], u_held bigint[], u_shortfall bigint[], u_fees bigint[],
    u_rate_input bigint[], u_rate_output bigint[], u_rate_cached bigint[], u_rate_write bigint[],
    u_rate_image bigint[], u_latency bigint[], u_status integer[], u_error text[], u_streamed boolean[],
    u_estimated boolean[], u_created timestamptz[],
    d_id uuid[], d_user uuid[], d_key uuid[], d_amount bigint[], d_after bigint[], d_request text[],
    d_created timestamptz[],
    b_user uuid[], b_charged bigint[],
    l_id uuid[], l_charged bigint[],
    k_id uuid[], k_charged bigint[],
    s_user uuid[], s_key uuid[], s_minute bigint[], s_charged bigint[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model, endpoint,
                            prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
                            reasoning_tokens, images, cost_micros, charged_micros, held_micros,
                            shortfall_micros, fees_micros, rate_input, rate_output, rate_cached_input,
                            rate_cache_write, rate_image, latency_ms, status, error_code, streamed,
                            usage_estimated, created_at)
    SELECT * FROM unnest(u_id, u_request_id, u_user, u_key, u_model, u_provider, u_upstream_model,
                         u_endpoint, u_prompt, u_completion, u_cached, u_cache_write, u_reasoning,
                         u_images, u_cost, u_charged, u_held, u_shortfall, u_fees, u_rate_input,
                         u_rate_output, u_rate_cached, u_rate_write, u_rate_image, u_latency,
                         u_status, u_error, u_streamed, u_estimated, u_created)
    ON CONFLICT (id) DO NOTHING;

    INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros,
                                     idempotency_key, reason, request_id, created_at, key_id)
    SELECT t.id, t.user_id, 'usage', t.amount, t.after, 'usage:' || t.id, NULL, t.request_id,
           t.created_at, t.key_id
    FROM unnest(d_id, d_user, d_key, d_amount, d_after, d_request, d_created)
         AS t(id, user_id, key_id, amount, after, request_id, created_at);

    UPDATE credit_balances b SET balance_micros = b.balance_micros - t.charged,
                                 leased_micros = greatest(0, b.leased_micros - t.charged),
                                 updated_at = now()
    FROM unnest(b_user, b_charged) AS t(user_id, charged) WHERE b.user_id = t.user_id;

    UPDATE credit_leases l SET amount_micros = greatest(0, l.amount_micros - t.charged)
    FROM unnest(l_id, l_charged) AS t(id, charged) WHERE l.id = t.id;

    UPDATE api_keys k SET spent_micros = k.spent_micros + t.charged
    FROM (SELECT * FROM unnest(k_id, k_charged) AS t(id, charged) ORDER BY id) t WHERE k.id = t.id;

    INSERT INTO spend_buckets AS sb (user_id, key_id, minute, spent_micros)
    SELECT * FROM unnest(s_user, s_key, s_minute, s_charged) AS t(user_id, key_id, minute, charged)
    ORDER BY 1, 2, 3
    ON CONFLICT (user_id, key_id, minute) DO UPDATE SET spent_micros = sb.spent_micros + excluded.spent_micros;
END
$$;

-- Leases given back in one call (idle ones, reclaimed credit, shutdown): for each, up to the
-- amount of its free credit, ending it when asked, and recording the reclaim it answers.
-- Returns the leases that were still active.
CREATE FUNCTION layers_return_leases(p_users uuid[], p_leases uuid[], p_amounts bigint[], p_end boolean[],
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
        SET amount_micros = c.old - c.back,
            state = CASE WHEN c.ends THEN 'released' ELSE l.state END,
            ended_at = CASE WHEN c.ends THEN now() ELSE l.ended_at END,
            reclaim_epoch = greatest(l.reclaim_epoch, coalesce(c.epoch, 0))
        FROM cur c WHERE l.id = c.id
        -- An ended lease gives back everything it still held.
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

-- Reclaims are recorded by the account's own transaction (row-level security applies), so the
-- app may update the reclaim epoch of its current user's balance row: it already may.

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['layers_settle_prepare(uuid[], uuid[], uuid[])',
                             'layers_settle_write(uuid[], text[], uuid[], uuid[], text[], text[], text[], text[], '
                             'bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], '
                             'bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], '
                             'bigint[], integer[], text[], boolean[], boolean[], timestamptz[], uuid[], uuid[], '
                             'uuid[], bigint[], bigint[], text[], timestamptz[], uuid[], bigint[], uuid[], '
                             'bigint[], uuid[], bigint[], uuid[], uuid[], bigint[], bigint[])',
                             'layers_return_leases(uuid[], uuid[], bigint[], boolean[], bigint[])'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO layers_app', f);
    END LOOP;
END
$$;

-- Usage rows written outside settlement carry the new columns too.
DROP FUNCTION layers_record_usage(jsonb);
CREATE FUNCTION layers_record_usage(p_rows jsonb) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH inserted AS (
        INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model,
                                endpoint, prompt_tokens, completion_tokens, cached_tokens,
                                cache_write_tokens, reasoning_tokens, images, cost_micros,
                                charged_micros, held_micros, shortfall_micros, fees_micros,
                                rate_input, rate_output, rate_cached_input, rate_cache_write,
                                rate_image, latency_ms, status, error_code, streamed,
                                usage_estimated, created_at)
        SELECT r.id, r.request_id, r.user_id, r.key_id, r.model, r.provider, r.upstream_model,
               r.endpoint, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
               r.cache_write_tokens, r.reasoning_tokens, r.images, r.cost_micros,
               r.charged_micros, r.held_micros, r.shortfall_micros, r.fees_micros, r.rate_input,
               r.rate_output, r.rate_cached_input, r.rate_cache_write, r.rate_image,
               r.latency_ms, r.status, r.error_code, r.streamed, r.usage_estimated, r.created_at
        FROM jsonb_to_recordset(p_rows) AS r(
            id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
            upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint, images bigint,
            cost_micros bigint, charged_micros bigint, held_micros bigint, shortfall_micros bigint,
            fees_micros bigint, rate_input bigint, rate_output bigint, rate_cached_input bigint,
            rate_cache_write bigint, rate_image bigint, latency_ms bigint, status integer,
            error_code text, streamed boolean, usage_estimated boolean, created_at timestamptz)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
$$;
REVOKE ALL ON FUNCTION layers_record_usage(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_record_usage(jsonb) TO layers_app;
