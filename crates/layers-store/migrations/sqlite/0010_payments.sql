-- Payments through Stripe (issue 15). Each event's id is recorded with its effect, in one
-- transaction, so an event delivered twice (or a hundred times at once) applies once.

-- The account's customer and subscription at Stripe, as the webhooks left them.
CREATE TABLE billing_accounts (
    user_id             TEXT PRIMARY KEY REFERENCES users (id),
    stripe_customer     TEXT UNIQUE,
    subscription_id     TEXT,
    subscription_status TEXT,
    plan                TEXT CHECK (plan IS NULL OR plan IN ('free', 'starter', 'pro', 'team')),
    period_end          INTEGER,
    review_flagged_at   INTEGER,
    -- When the subscription state stored was fetched: an older fetch never replaces it.
    observed_at         INTEGER,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE stripe_events (
    event_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    event_type   TEXT NOT NULL,
    processed_at INTEGER NOT NULL
);

-- The Checkout Sessions Layers created: the success page reads whether one was credited.
CREATE TABLE stripe_checkouts (
    session_id     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    mode           TEXT NOT NULL CHECK (mode IN ('payment', 'subscription')),
    credits_micros INTEGER NOT NULL CHECK (credits_micros >= 0),
    created_at     INTEGER NOT NULL,
    completed_at   INTEGER
);

-- What each payment granted, and what refunds and disputes took back of it.
CREATE TABLE stripe_payments (
    payment_ref     TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    paid_cents      INTEGER NOT NULL CHECK (paid_cents >= 0),
    granted_micros  INTEGER NOT NULL CHECK (granted_micros >= 0),
    refunded_cents  INTEGER NOT NULL DEFAULT 0,
    refunded_micros INTEGER NOT NULL DEFAULT 0,
    -- A refund that arrived before its payment's grant: the grant, when it comes, takes it back.
    pending         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE stripe_disputes (
    dispute_id     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    payment_ref    TEXT NOT NULL,
    debited_micros INTEGER NOT NULL CHECK (debited_micros >= 0),
    status         TEXT NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    created_at     INTEGER NOT NULL,
    closed_at      INTEGER
);

CREATE TABLE stripe_invoices (
    invoice_id        TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    number            TEXT,
    amount_paid_cents INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    hosted_url        TEXT,
    pdf_url           TEXT,
    created_at        INTEGER NOT NULL
);
CREATE INDEX stripe_invoices_user_idx ON stripe_invoices (user_id, created_at);

CREATE TABLE auto_topups (
    user_id          TEXT PRIMARY KEY REFERENCES users (id),
    enabled          INTEGER NOT NULL,
    threshold_micros INTEGER NOT NULL CHECK (threshold_micros > 0),
    amount_credits   INTEGER NOT NULL CHECK (amount_credits > 0),
    failures         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
);

-- One row per (account, trigger): the primary key is what makes one node, once, buy.
CREATE TABLE auto_topup_attempts (
    user_id     TEXT NOT NULL REFERENCES users (id),
    trigger_key TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, trigger_key)
);
