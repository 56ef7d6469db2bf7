-- Payments through Stripe (issue 15). Each event's id is recorded with its effect, in one
-- transaction, so an event delivered twice (or a hundred times at once) applies once.

-- The account's customer and subscription at Stripe, as the webhooks left them.
CREATE TABLE billing_accounts (
    user_id             uuid PRIMARY KEY REFERENCES users (id),
    stripe_customer     text UNIQUE,
    subscription_id     text,
    subscription_status text,
    plan                text CHECK (plan IS NULL OR plan IN ('free', 'starter', 'pro', 'team')),
    period_end          timestamptz,
    review_flagged_at   timestamptz,
    -- When the subscription state stored was fetched: an older fetch never replaces it.
    observed_at         timestamptz,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    event_type   text NOT NULL,
    processed_at timestamptz NOT NULL
);

-- The Checkout Sessions Layers created: the success page reads whether one was credited.
CREATE TABLE stripe_checkouts (
    session_id     text PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id),
    mode           text NOT NULL CHECK (mode IN ('payment', 'subscription')),
    credits_micros bigint NOT NULL CHECK (credits_micros >= 0),
    created_at     timestamptz NOT NULL,
    completed_at   timestamptz
);

-- What each payment granted, and what refunds and disputes took back of it.
CREATE TABLE stripe_payments (
    payment_ref     text PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id),
    paid_cents      bigint NOT NULL CHECK (paid_cents >= 0),
    granted_micros  bigint NOT NULL CHECK (granted_micros >= 0),
    refunded_cents  bigint NOT NULL DEFAULT 0,
    refunded_micros bigint NOT NULL DEFAULT 0,
    -- A refund that arrived before its payment's grant: the grant, when it comes, takes it back.
    pending         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL
);

CREATE TABLE stripe_disputes (
    dispute_id     text PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id),
    payment_ref    text NOT NULL,
    debited_micros bigint NOT NULL CHECK (debited_micros >= 0),
    status         text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    created_at     timestamptz NOT NULL,
    closed_at      timestamptz
);

CREATE TABLE stripe_invoices (
    invoice_id        text PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id),
    number            text,
    amount_paid_cents bigint NOT NULL,
    currency          text NOT NULL,
    status            text NOT NULL,
    hosted_url        text,
    pdf_url           text,
    created_at        timestamptz NOT NULL
);
CREATE INDEX stripe_invoices_user_idx ON stripe_invoices (user_id, created_at);

CREATE TABLE auto_topups (
    user_id          uuid PRIMARY KEY REFERENCES users (id),
    enabled          boolean NOT NULL,
    threshold_micros bigint NOT NULL CHECK (threshold_micros > 0),
    amount_credits   bigint NOT NULL CHECK (amount_credits > 0),
    failures         integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL
);

-- One row per (account, trigger): the primary key is what makes one node, once, buy.
CREATE TABLE auto_topup_attempts (
    user_id     uuid NOT NULL REFERENCES users (id),
    trigger_key text NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, trigger_key)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['billing_accounts', 'stripe_events', 'stripe_checkouts', 'stripe_payments',
                             'stripe_disputes', 'stripe_invoices', 'auto_topups', 'auto_topup_attempts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY layers_app_own_rows ON %I TO layers_app '
                       'USING (user_id = layers_current_user()) WITH CHECK (user_id = layers_current_user())', t);
        EXECUTE format('CREATE POLICY layers_owner_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
    END LOOP;
END
$$;
-- Records of money are never deleted by the server; event records are never changed either.
GRANT SELECT, INSERT ON stripe_events TO layers_app;
GRANT SELECT, INSERT, UPDATE ON billing_accounts, stripe_checkouts, stripe_payments, stripe_disputes, stripe_invoices,
                                auto_topups, auto_topup_attempts TO layers_app;

-- A webhook names a Stripe customer, not a user: this finds the account it belongs to, and
-- nothing else about it.
CREATE FUNCTION layers_stripe_customer_owner(p_customer text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT user_id FROM billing_accounts WHERE stripe_customer = p_customer
$$;
REVOKE ALL ON FUNCTION layers_stripe_customer_owner(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION layers_stripe_customer_owner(text) TO layers_app;
