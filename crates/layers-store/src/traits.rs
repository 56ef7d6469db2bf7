//! The store's traits, one per concern. Both backends implement all of them and one
//! conformance suite (tests/it) runs the same bodies against each.
//! Invariant: a method that acts on behalf of one user takes that user's id and touches no
//! other user's rows (on PostgreSQL, row-level security enforces it as well).

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, Tier, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreResult;
use crate::records::*;

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the user and its zero balance.
    async fn create_user(&self, new: &NewUser) -> StoreResult<User>;
    /// System lookup (login, operator commands).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Changes the tier and tells every node's cache.
    async fn set_tier(&self, id: UserId, tier: Tier) -> StoreResult<()>;
    /// Suspends or reactivates the account and tells every node's cache.
    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StoreResult<()>;
    /// Sets the account's overrides of its tier's spend caps and tells every node's cache.
    async fn set_user_caps(&self, id: UserId, caps: CapOverrides) -> StoreResult<()>;
    /// Sets the account's overrides of its tier's rate limits and tells every node's cache.
    async fn set_user_rate(&self, id: UserId, rate: RateOverrides) -> StoreResult<()>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, new: &NewKey) -> StoreResult<KeyRecord>;
    /// System lookup for authentication: the key with this hash and its owner's state.
    async fn key_for_auth(&self, key_hash: &[u8]) -> StoreResult<Option<KeyAuthRecord>>;
    async fn keys_of_user(&self, user: UserId) -> StoreResult<Vec<KeyRecord>>;
    /// System lookup for incident response: keys with this display prefix, by their current
    /// secret or the one a rotation replaced.
    async fn keys_by_prefix(&self, display_prefix: &str) -> StoreResult<Vec<KeyRecord>>;
    /// Changes a key's state and tells every node's cache. `NotFound` if the user has no such key
    /// or it is deleted (deletion is final). Leaving the active state also ends a rotation's
    /// overlap: a reactivated key answers to its current secret only.
    async fn set_key_state(&self, user: UserId, key: KeyId, state: KeyState) -> StoreResult<KeyRecord>;
    /// Sets a key's spend caps, spend limit and its period, and tells every node's cache.
    async fn set_key_limits(&self, user: UserId, key: KeyId, limits: KeyLimits) -> StoreResult<KeyRecord>;
    /// Gives a key a new secret; the current one becomes its previous secret, valid until
    /// `old_valid_until` (a secret retired by an earlier rotation is dropped at once). Tells
    /// every node's cache about both secrets. `NotFound` unless the user has the key and it is
    /// not deleted.
    async fn rotate_key(
        &self,
        user: UserId,
        key: KeyId,
        secret: &NewSecret,
        old_valid_until: OffsetDateTime,
        at: OffsetDateTime,
    ) -> StoreResult<KeyRecord>;
    /// The user's keys' spend per UTC day from `from_day` on: (key, Unix day, spent).
    async fn key_spend_days(&self, user: UserId, from_day: i64) -> StoreResult<Vec<(KeyId, i64, MicroCredits)>>;
    /// System lookup for the reminder job: active keys of active accounts expiring after
    /// `now` and no later than `before`, soonest first.
    async fn keys_expiring(&self, now: OffsetDateTime, before: OffsetDateTime) -> StoreResult<Vec<ExpiringKey>>;
    /// Claims the reminder sent `days` before the user's key expires: `true` for exactly one
    /// caller, and only if no reminder as close to expiry was sent.
    async fn claim_expiry_reminder(&self, user: UserId, key: KeyId, days: i32) -> StoreResult<bool>;
    /// Ends the overlap of the key's replaced secret now (it is forgotten and every node is
    /// told). Returns the key as it is after.
    async fn retire_previous_secret(&self, user: UserId, key: KeyId) -> StoreResult<KeyRecord>;
    /// Records last-used times (batched by each node; older times never overwrite newer).
    async fn touch_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> StoreResult<()>;
    /// The account a key belongs to (operator commands act on a key by id).
    async fn key_owner(&self, key: KeyId) -> StoreResult<Option<UserId>>;
    /// Keys not deleted whose hash uses a pepper version older than `current` (not yet
    /// re-issued after a pepper rotation).
    async fn keys_on_old_pepper(&self, current: i32) -> StoreResult<Vec<KeyRecord>>;
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Appends a transaction and moves the balance, atomically and at most once per
    /// idempotency key.
    async fn apply_transaction(&self, tx: &NewTransaction) -> StoreResult<LedgerOutcome>;
    async fn balance(&self, user: UserId) -> StoreResult<MicroCredits>;
    /// Newest first.
    async fn transactions(&self, user: UserId, limit: u32) -> StoreResult<Vec<CreditTransaction>>;
    /// Sum of all the user's transactions: always equal to the balance.
    async fn ledger_sum(&self, user: UserId) -> StoreResult<MicroCredits>;
    /// The statement, newest first: every transaction except usage, and usage debits summed
    /// per UTC day and per stretch between other transactions, each with the balance after
    /// it. At most `limit` lines.
    async fn statement(&self, user: UserId, limit: u32) -> StoreResult<Vec<StatementLine>>;
    /// When credit was last added to the account (any positive transaction).
    async fn last_credit_at(&self, user: UserId) -> StoreResult<Option<OffsetDateTime>>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Writes a batch of usage rows (of any users); rows whose id exists are skipped.
    async fn record_usage(&self, rows: &[UsageRecord]) -> StoreResult<u64>;
    /// The newest usage row of the user with this request id.
    async fn usage_by_request(&self, user: UserId, request_id: &str) -> StoreResult<Option<UsageRecord>>;
    /// Newest first; `before` continues after the last row of a previous page.
    async fn recent_usage(
        &self,
        user: UserId,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>>;
    /// The rows the filter selects, newest first; `before` continues after the last row of a
    /// previous page (so rows written meanwhile never shift a page).
    async fn usage_page(
        &self,
        user: UserId,
        filter: &UsageFilter,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>>;
    /// The filter's rows summed by UTC day, model and key.
    async fn usage_summary(&self, user: UserId, filter: &UsageFilter) -> StoreResult<UsageSummary>;
    /// One usage row of the user by its internal id.
    async fn usage_row(&self, user: UserId, id: Uuid) -> StoreResult<Option<UsageRecord>>;
    /// What the account was charged per model in [`from`, `until`): one grouped sum, for the
    /// anomaly rules.
    async fn spend_by_model(
        &self,
        user: UserId,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<Vec<(String, MicroCredits)>>;
    /// Deletes at most `limit` usage rows older than `before` (the retention setting), of every
    /// account; the ledger, the spend roll-ups and the audit trail stay. How many went.
    async fn prune_usage(&self, before: OffsetDateTime, limit: u32) -> StoreResult<u64>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Newest first.
    async fn audit_events(&self, user: UserId, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    /// The user's events the filter selects, newest first.
    async fn audit_events_filtered(
        &self,
        user: UserId,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Events of no account (failed authentications, IP blocks), newest first, optionally of
    /// one type.
    async fn system_audit_events(&self, event_type: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// System lookup: the session with this token hash, if not revoked.
    async fn session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;
    async fn touch_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()>;
    async fn revoke_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()>;
    /// Revokes every session of the user; returns how many were open.
    async fn revoke_all_sessions(&self, user: UserId, at: OffsetDateTime) -> StoreResult<u64>;
    /// Ends every live session of every account ("log out everyone", an incident command).
    async fn revoke_every_session(&self, at: OffsetDateTime) -> StoreResult<u64>;
}

/// How people get into their accounts: passwords, confirmed addresses and e-mailed links.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// System lookup: the login facts of the account with this (normalized) e-mail.
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>>;
    async fn credentials(&self, user: UserId) -> StoreResult<Option<Credentials>>;
    async fn set_password_hash(&self, user: UserId, hash: &str, at: OffsetDateTime) -> StoreResult<()>;
    async fn mark_email_verified(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()>;
    /// Moves the account to a new (normalized, confirmed) address; a conflict when another
    /// account has it.
    async fn set_email(&self, user: UserId, email: &str, at: OffsetDateTime) -> StoreResult<()>;
    async fn create_email_token(&self, token: &EmailToken) -> StoreResult<()>;
    /// System lookup: uses the live token with this hash and purpose, once; `None` when it is
    /// unknown, used or expired.
    async fn use_email_token(
        &self,
        token_hash: &[u8],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<EmailToken>>;
    /// Ends every link of the account still unused (after a reset, a password or address change,
    /// "log out everywhere").
    async fn revoke_email_tokens(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()>;
    /// The user's sessions not revoked, newest first.
    async fn sessions_of_user(&self, user: UserId) -> StoreResult<Vec<Session>>;
    async fn two_factor(&self, user: UserId) -> StoreResult<Option<TwoFactor>>;
    /// Stores a new pending secret, unless two-factor is already enabled (then `false`).
    async fn set_pending_two_factor(&self, user: UserId, secret_enc: &[u8], at: OffsetDateTime) -> StoreResult<bool>;
    /// Enables the pending secret at `step` with fresh recovery codes (replacing any old ones).
    async fn enable_two_factor(
        &self,
        user: UserId,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Records `step` as used if it is later than the last one; `false` when it is not (a replay).
    async fn use_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool>;
    /// Uses a recovery code once; `false` when unknown or used.
    async fn use_recovery_code(&self, user: UserId, code_hash: &[u8], at: OffsetDateTime) -> StoreResult<bool>;
    async fn unused_recovery_codes(&self, user: UserId) -> StoreResult<u32>;
    /// Removes the second factor and its recovery codes.
    async fn disable_two_factor(&self, user: UserId) -> StoreResult<()>;
    /// Erases an account's personal data (GDPR): its address becomes one that names no one, its
    /// password, sessions, links and second factor go, its audit rows lose address and user
    /// agent, and it is suspended; the ledger and usage stay, de-identified. (Its keys are the
    /// key service's to delete, with their invalidation.)
    async fn erase_personal_data(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()>;
    /// System lookup: the account an identity provider's subject is linked to.
    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>>;
    /// The identities linked to an account: (issuer, subject, linked at).
    async fn identities_of(&self, user: UserId) -> StoreResult<Vec<(String, String, OffsetDateTime)>>;
    /// Links an identity to an account (nothing if already linked).
    async fn link_identity(&self, user: UserId, issuer: &str, subject: &str, at: OffsetDateTime) -> StoreResult<()>;
}

/// Credit leased to nodes, and the settlement of requests against it (SPEC §4.2). The rules
/// (how much is granted, which charges apply) are layers-domain's `credit` module.
#[async_trait]
pub trait CreditStore: Send + Sync {
    /// Atomically grants credit for one key to one node within the balance (minus every
    /// node's leases) and the caps.
    async fn acquire_lease(&self, req: &LeaseRequest) -> StoreResult<LeaseGrant>;
    /// Gives back credit from leases (idle, reclaimed, shutdown) in one call. Returns the
    /// leases that were still active (the others had been reaped already).
    async fn return_leases(&self, returns: &[LeaseReturn]) -> StoreResult<Vec<Uuid>>;
    /// Extends the node's active leases; returns the ids that were still active (the others
    /// were ended by the reaper while the node was away).
    async fn renew_leases(&self, node: Uuid, leases: &[Uuid], ttl: std::time::Duration) -> StoreResult<Vec<Uuid>>;
    /// Asks every lease of the account to give back its free credit (a node needs what they
    /// hold): bumps the account's reclaim epoch and tells every node through the change feed.
    async fn request_reclaim(&self, user: UserId) -> StoreResult<i64>;
    /// Writes a batch of settlements: usage rows, ledger debits, lease and spend counters.
    /// Idempotent by usage id; a charge is applied in full from its active lease or refused.
    async fn settle(&self, batch: &[Settlement]) -> StoreResult<Vec<SettleResult>>;
    /// Ends leases that expired by the database's clock (their node stopped renewing) and
    /// returns their credit.
    async fn reap_expired_leases(&self) -> StoreResult<Reaped>;
    async fn leases_of_user(&self, user: UserId) -> StoreResult<Vec<LeaseRecord>>;
    async fn credit_state(&self, user: UserId) -> StoreResult<CreditState>;
}

/// What alerts people asked for, and which were sent.
#[async_trait]
pub trait AlertStore: Send + Sync {
    async fn alert_settings(&self, user: UserId) -> StoreResult<Option<AlertSettings>>;
    async fn set_alert_settings(&self, user: UserId, settings: &AlertSettings, at: OffsetDateTime) -> StoreResult<()>;
    /// Records an alert as sent: `true` for exactly one caller per (kind, subject, period,
    /// threshold), which then sends it.
    async fn claim_alert(&self, firing: &AlertFiring) -> StoreResult<bool>;
}

/// Payments through Stripe (SPEC §7). Invariant: an event's id is recorded in the same
/// transaction as its effect, so a replay, or the same event delivered concurrently, changes
/// nothing; every change of a balance is a ledger entry.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    async fn billing_account(&self, user: UserId) -> StoreResult<BillingAccount>;
    /// Records the account's Stripe customer; the first one recorded wins and is returned.
    async fn set_stripe_customer(&self, user: UserId, customer: &str, at: OffsetDateTime) -> StoreResult<String>;
    /// The account a Stripe customer belongs to (work for no single user).
    async fn user_of_stripe_customer(&self, customer: &str) -> StoreResult<Option<UserId>>;
    /// Applies an event's effects with its record, in one transaction (`event` is `None` for an
    /// effect Layers learns from Stripe's answer to its own call, idempotent by itself).
    async fn apply_payment(
        &self,
        user: UserId,
        event: Option<&StripeEventRecord>,
        effects: &[PaymentEffect],
        at: OffsetDateTime,
    ) -> StoreResult<PaymentOutcome>;
    async fn record_checkout(&self, checkout: &CheckoutRecord) -> StoreResult<()>;
    async fn checkout(&self, user: UserId, session_id: &str) -> StoreResult<Option<CheckoutRecord>>;
    /// The account's invoices and receipts, newest first.
    async fn invoices(&self, user: UserId, limit: u32) -> StoreResult<Vec<InvoiceRecord>>;
    async fn auto_topup(&self, user: UserId) -> StoreResult<Option<AutoTopUp>>;
    /// Sets the rule; (re-)enabling it clears the failure count.
    async fn set_auto_topup(&self, user: UserId, rule: &AutoTopUp) -> StoreResult<()>;
    /// Claims one auto top-up trigger: true for the one caller (of any node) that should buy
    /// (again, when an earlier claim's purchase is still unanswered after
    /// `autotopup::RETRY_UNANSWERED_AFTER_SECS`).
    async fn claim_auto_topup(&self, user: UserId, trigger: &str, at: OffsetDateTime) -> StoreResult<bool>;
    /// Auto top-up purchases started since `since`.
    async fn auto_topups_since(&self, user: UserId, since: OffsetDateTime) -> StoreResult<i64>;
}

/// Anomaly holds (issue 16): a usage spike holds an account to a lower rate limit for a while.
#[async_trait]
pub trait AnomalyStore: Send + Sync {
    /// Holds the account to `requests_per_minute` (or its own lower limit) until `until`,
    /// keeping its own override to put back, and announces the change to every node; false when
    /// a hold was already on (it then lasts until the later end).
    async fn hold_account(
        &self,
        user: UserId,
        requests_per_minute: u32,
        until: OffsetDateTime,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Ends the holds whose time is up (each once, whichever node asks), putting the account's
    /// own override back unless an operator changed it meanwhile: the accounts released. On
    /// PostgreSQL the database's clock decides (`now` is for SQLite's single process).
    async fn release_anomaly_holds(&self, now: OffsetDateTime) -> StoreResult<Vec<UserId>>;
}

#[async_trait]
pub trait CacheEventStore: Send + Sync {
    /// Events created after `since` (database clock), oldest first.
    async fn cache_events_since(&self, since: OffsetDateTime) -> StoreResult<Vec<CacheEvent>>;
    /// The database's clock, so nodes with skewed clocks agree on the feed's position.
    async fn db_now(&self) -> StoreResult<OffsetDateTime>;
}
