-- App attribution (issue 17): the app a request came from, as OpenRouter's attribution headers
-- name it (`X-Title`, and the origin of `HTTP-Referer`), shown on the dashboard. The two
-- functions that write usage rows take the new columns.
ALTER TABLE usage_logs ADD COLUMN app_title text, ADD COLUMN app_origin text;

DROP FUNCTION layers_settle_write(uuid[], text[], uuid[], uuid[], text[], text[], text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], integer[], text[], boolean[], boolean[], timestamptz[], uuid[], uuid[], uuid[], bigint[], bigint[], text[], timestamptz[], uuid[], bigint[], uuid[], bigint[], uuid[], bigint[], uuid[], uuid[], bigint[], bigint[]);
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
    s_user uuid[], s_key uuid[], s_minute bigint[], s_charged bigint[],
    u_app_title text[], u_app_origin text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO usage_logs (id, request_id, user_id, key_id, model, provider, upstream_model, endpoint,
                            prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
                            reasoning_tokens, images, cost_micros, charged_micros, held_micros,
                            shortfall_micros, fees_micros, rate_input, rate_output, rate_cached_input,
                            rate_cache_write, rate_image, latency_ms, status, error_code, streamed,
                            usage_estimated, created_at, app_title, app_origin)
    SELECT * FROM unnest(u_id, u_request_id, u_user, u_key, u_model, u_provider, u_upstream_model,
                         u_endpoint, u_prompt, u_completion, u_cached, u_cache_write, u_reasoning,
                         u_images, u_cost, u_charged, u_held, u_shortfall, u_fees, u_rate_input,
                         u_rate_output, u_rate_cached, u_rate_write, u_rate_image, u_latency,
                         u_status, u_error, u_streamed, u_estimated, u_created, u_app_title,
                         u_app_origin)
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
REVOKE ALL ON FUNCTION layers_settle_write(uuid[], text[], uuid[], uuid[], text[], text[], text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], integer[], text[], boolean[], boolean[], timestamptz[], uuid[], uuid[], uuid[], bigint[], bigint[], text[], timestamptz[], uuid[], bigint[], uuid[], bigint[], uuid[], bigint[], uuid[], uuid[], bigint[], bigint[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_settle_write(uuid[], text[], uuid[], uuid[], text[], text[], text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], integer[], text[], boolean[], boolean[], timestamptz[], uuid[], uuid[], uuid[], bigint[], bigint[], text[], timestamptz[], uuid[], bigint[], uuid[], bigint[], uuid[], bigint[], uuid[], uuid[], bigint[], bigint[], text[], text[]) TO layers_app;

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
                                usage_estimated, created_at, app_title, app_origin)
        SELECT r.id, r.request_id, r.user_id, r.key_id, r.model, r.provider, r.upstream_model,
               r.endpoint, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
               r.cache_write_tokens, r.reasoning_tokens, r.images, r.cost_micros,
               r.charged_micros, r.held_micros, r.shortfall_micros, r.fees_micros, r.rate_input,
               r.rate_output, r.rate_cached_input, r.rate_cache_write, r.rate_image,
               r.latency_ms, r.status, r.error_code, r.streamed, r.usage_estimated, r.created_at,
               r.app_title, r.app_origin
        FROM jsonb_to_recordset(p_rows) AS r(
            id uuid, request_id text, user_id uuid, key_id uuid, model text, provider text,
            upstream_model text, endpoint text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint, images bigint,
            cost_micros bigint, charged_micros bigint, held_micros bigint, shortfall_micros bigint,
            fees_micros bigint, rate_input bigint, rate_output bigint, rate_cached_input bigint,
            rate_cache_write bigint, rate_image bigint, latency_ms bigint, status integer,
            error_code text, streamed boolean, usage_estimated boolean, created_at timestamptz,
            app_title text, app_origin text)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
$$;
REVOKE ALL ON FUNCTION layers_record_usage(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_record_usage(jsonb) TO layers_app;
