//! The rows the store reads and writes, as typed records shared by both backends.
//! Invariant: no record carries a secret in clear (keys and session tokens appear only hashed).

pub use layers_domain::dashboard::SpendPeriod;
use layers_domain::{KeyEnv, KeyId, MicroCredits, Rates, Tier, Usage, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub tier: Tier,
    pub status: UserStatus,
    /// Account overrides of the tier's spend caps.
    pub caps: CapOverrides,
    /// Account overrides of the tier's rate limits.
    pub rate: RateOverrides,
    pub created_at: OffsetDateTime,
}

/// Overrides of the tier's rate limits stored on an account (`None`: inherit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateOverrides {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

/// Overrides of spend caps stored on an account or a key (`None`: inherit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapOverrides {
    pub per_request: Option<MicroCredits>,
    pub per_hour: Option<MicroCredits>,
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    /// Already normalised (trimmed, lower-cased) by the caller.
    pub email: String,
    pub tier: Tier,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Deactivated,
    Deleted,
}

/// An API key as stored: hashed, with display parts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub user_id: UserId,
    pub name: String,
    pub env: KeyEnv,
    pub key_hash: Vec<u8>,
    pub pepper_version: i32,
    pub display_prefix: String,
    pub last4: String,
    pub state: KeyState,
    /// Spend limit of the key, per `limit_period`.
    pub spend_limit: Option<MicroCredits>,
    /// How the spend limit resets (UTC calendar periods, or never).
    pub limit_period: SpendPeriod,
    /// Key overrides of the spend caps.
    pub caps: CapOverrides,
    /// What the key has spent so far (settled), over its whole life.
    pub spent: MicroCredits,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    /// The secret a rotation replaced, while it is still recorded.
    pub previous: Option<RetiredSecret>,
    pub rotated_at: Option<OffsetDateTime>,
}

/// A key's secret replaced by a rotation: valid until `valid_until`, then refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetiredSecret {
    pub key_hash: Vec<u8>,
    pub pepper_version: i32,
    pub display_prefix: String,
    pub last4: String,
    pub valid_until: OffsetDateTime,
}

/// A new secret for an existing key (rotation): its hash and display parts.
#[derive(Clone, Debug)]
pub struct NewSecret {
    pub key_hash: Vec<u8>,
    pub pepper_version: i32,
    pub display_prefix: String,
    pub last4: String,
}

/// The limits a person sets on a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub caps: CapOverrides,
    pub spend_limit: Option<MicroCredits>,
    pub period: SpendPeriod,
}

/// A key that expires soon, for the reminder job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringKey {
    pub id: KeyId,
    pub user_id: UserId,
    pub name: String,
    pub display_prefix: String,
    pub last4: String,
    pub expires_at: OffsetDateTime,
    /// Days before expiry of the last reminder sent.
    pub reminded: Option<i32>,
}

/// Which usage rows a page, a chart or an export shows. Every field narrows; `None` is all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub key: Option<KeyId>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<StatusClass>,
    /// From this instant (inclusive).
    pub from: Option<OffsetDateTime>,
    /// Until this instant (exclusive).
    pub until: Option<OffsetDateTime>,
}

/// Requests that succeeded (2xx) or failed (anything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    Ok,
    Failed,
}

/// Totals of a group of usage rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub charged: MicroCredits,
}

/// Usage rows summed by UTC day, by model and by key (what the charts and breakdowns show).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageSummary {
    pub total: UsageTotals,
    /// (Unix day, totals), oldest first; days without rows are absent.
    pub by_day: Vec<(i64, UsageTotals)>,
    /// (model, totals), most charged first.
    pub by_model: Vec<(String, UsageTotals)>,
    /// (key, totals), most charged first; `None` for rows whose key was deleted.
    pub by_key: Vec<(Option<KeyId>, UsageTotals)>,
    /// (provider, totals), most charged first.
    pub by_provider: Vec<(String, UsageTotals)>,
}

/// One line of the billing statement: a ledger transaction, or a day's usage debits summed
/// (split at every other transaction, so no line spans a top-up or a refund).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    pub kind: TransactionKind,
    pub amount: MicroCredits,
    /// The balance after the line, as the ledger recorded it.
    pub balance_after: MicroCredits,
    /// The transaction's time; for a day of usage, its last debit's.
    pub at: OffsetDateTime,
    /// How many transactions the line sums (1 unless usage).
    pub count: i64,
    pub reason: Option<String>,
}

/// Which of a user's audit events to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only these types (empty: all).
    pub types: Vec<String>,
    pub since: Option<OffsetDateTime>,
    /// Strictly older than this (paging).
    pub before: Option<OffsetDateTime>,
}

/// What alerts a person asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertSettings {
    /// Alert when the balance falls below this.
    pub low_balance: Option<MicroCredits>,
    /// Percentages of each key's limit that alert.
    pub key_thresholds: Vec<u8>,
    /// Also POST each alert here, signed.
    pub webhook_url: Option<String>,
    /// The webhook's signing secret, encrypted by the server.
    pub webhook_secret_enc: Option<Vec<u8>>,
}

/// One alert, sent once: the key of its row in `alert_firings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertFiring {
    pub user: UserId,
    /// `low_balance` or `key_limit`.
    pub kind: &'static str,
    /// The key's id, or empty for the account.
    pub subject: String,
    /// Which period it fires once in (a top-up's time, a limit period's first day).
    pub period: String,
    pub threshold: i64,
    pub at: OffsetDateTime,
}

/// A key with what authentication needs to know about its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAuthRecord {
    pub key: KeyRecord,
    pub tier: Tier,
    pub user_status: UserStatus,
    pub account_caps: CapOverrides,
    pub account_rate: RateOverrides,
}

#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub user_id: UserId,
    pub name: String,
    pub env: KeyEnv,
    pub key_hash: Vec<u8>,
    pub pepper_version: i32,
    pub display_prefix: String,
    pub last4: String,
    pub spend_limit: Option<MicroCredits>,
    pub limit_period: SpendPeriod,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionKind {
    Grant,
    Purchase,
    SubscriptionGrant,
    Usage,
    Refund,
    Adjustment,
}

/// A ledger entry to append. Applying the same idempotency key twice applies it once.
#[derive(Clone, Debug)]
pub struct NewTransaction {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: TransactionKind,
    pub amount: MicroCredits,
    pub idempotency_key: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    /// Whether a debit may take the balance below zero (refunds may; usage may not). Credits
    /// always apply, even to a negative balance.
    pub allow_negative: bool,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditTransaction {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: TransactionKind,
    pub amount: MicroCredits,
    pub balance_after: MicroCredits,
    pub idempotency_key: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerOutcome {
    Applied {
        balance_after: MicroCredits,
    },
    /// The idempotency key was already used; nothing changed.
    Duplicate,
    /// The entry would take the balance below zero and was not applied.
    Insufficient {
        balance: MicroCredits,
    },
}

impl RateOverrides {
    /// The overrides as both backends store them (nullable integers), checked for range.
    pub(crate) fn from_columns(rpm: Option<i64>, tpm: Option<i64>) -> crate::error::StoreResult<RateOverrides> {
        let corrupt = |column| crate::error::StoreError::Corrupt { column };
        Ok(RateOverrides {
            requests_per_minute: rpm
                .map(|v| u32::try_from(v).map_err(|_| corrupt("requests_per_minute")))
                .transpose()?,
            tokens_per_minute: tpm.map(|v| u64::try_from(v).map_err(|_| corrupt("tokens_per_minute"))).transpose()?,
        })
    }
}

/// Where a page of usage ends: rows strictly older than this one come next. Time alone is not
/// enough (several rows can share a millisecond), so the row's id breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageCursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl UsageCursor {
    pub fn after(row: &UsageRecord) -> UsageCursor {
        UsageCursor { created_at: row.created_at, id: row.id }
    }
}

/// One row of `usage_logs`: one request that reached an upstream (or the sandbox). Its cost is
/// `rates.cost(usage) + fees`, recomputable from the row alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Internal, always generated: the idempotency key of the request's settlement.
    pub id: Uuid,
    /// Public request id (`x-request-id`), possibly chosen by the client, so not unique.
    pub request_id: String,
    pub user_id: UserId,
    pub key_id: Option<KeyId>,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub endpoint: String,
    pub usage: Usage,
    /// What the usage was worth at the charged price.
    pub cost: MicroCredits,
    /// What the ledger debited (less than `cost` on a shortfall or a refused late settlement).
    pub charged: MicroCredits,
    /// The hold the request was admitted with.
    pub held: MicroCredits,
    /// Cost that was not charged: beyond the per-request cap or what the lease could cover.
    pub shortfall: MicroCredits,
    /// Per-request fees the provider bills beside tokens (search requests), part of `cost`.
    pub fees: MicroCredits,
    /// The rates `cost` was computed at (after markup and the long-context choice).
    pub rates: Rates,
    pub latency_ms: i64,
    pub status: u16,
    pub error_code: Option<String>,
    pub streamed: bool,
    pub usage_estimated: bool,
    pub created_at: OffsetDateTime,
    /// The app that made the request, as its `X-Title` header named it (OpenRouter's
    /// attribution), bounded and printable.
    pub app_title: Option<String>,
    /// The app's origin (scheme, host and port of its `HTTP-Referer`; never a path).
    pub app_origin: Option<String>,
}

/// A request to lease more credit for one key to one node.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    /// The node's lease for this key (created on first use, extended afterwards).
    pub lease_id: Uuid,
    pub user: UserId,
    pub key: KeyId,
    pub node: Uuid,
    /// Grant nothing unless at least this much can be granted.
    pub min: MicroCredits,
    pub want: MicroCredits,
    pub account_hour_cap: Option<MicroCredits>,
    pub key_hour_cap: Option<MicroCredits>,
    pub key_total_cap: Option<MicroCredits>,
    /// For a calendar limit: the period's first Unix day (`key_total_cap` is then the limit of
    /// spend since that day); `None` for a lifetime limit.
    pub key_period_from_day: Option<i64>,
    /// The lease expires this long after now (the database's clock) unless renewed.
    pub ttl: std::time::Duration,
}

/// What the database granted, and the room each limit left (the rule is layers-domain's).
pub type LeaseGrant = layers_domain::credit::GrantDecision;

/// Credit a node gives back from one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseReturn {
    pub user: UserId,
    pub lease: Uuid,
    /// Up to this much of the lease's credit (never more than it holds).
    pub amount: MicroCredits,
    /// Close the lease (it then gives back everything it still holds).
    pub end: bool,
    /// The reclaim of the account this return answers.
    pub reclaim_epoch: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    Active,
    Released,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: Uuid,
    pub user_id: UserId,
    pub key_id: KeyId,
    pub node_id: Uuid,
    pub amount: MicroCredits,
    pub state: LeaseState,
    pub expires_at: OffsetDateTime,
}

/// One request's settlement: its usage row and, when it cost something, the lease it drew on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// `usage.charged` is what the node charged against `lease`: applied in full while the
    /// lease is active, refused once it has ended.
    pub usage: UsageRecord,
    pub lease_id: Option<Uuid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    Applied,
    /// Already settled (a retried flush): nothing changed.
    Duplicate,
    /// The lease had been ended by the reaper: recorded, not charged.
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettleResult {
    pub usage_id: Uuid,
    pub outcome: SettleOutcome,
    /// What the ledger debited.
    pub charged: MicroCredits,
    pub balance_after: Option<MicroCredits>,
}

/// Balance and the credit leased to nodes out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditState {
    pub balance: MicroCredits,
    pub leased: MicroCredits,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub leases: u64,
    pub micros: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub user_id: Option<UserId>,
    pub event_type: String,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub metadata: serde_json::Value,
    pub severity: Severity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: UserId,
    pub token_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub authenticated_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheScope {
    /// One key changed state: drop it by hash.
    Key,
    /// An account changed (tier, status): drop everything cached about it.
    Account,
    /// A node needs credit the account's leases hold: every node gives back what it can.
    Credit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEvent {
    pub id: i64,
    pub scope: CacheScope,
    pub key_hash: Option<Vec<u8>>,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    /// For a reclaim: the account's reclaim epoch it asks leases to answer.
    pub reclaim_epoch: Option<i64>,
}

// === text forms shared by both backends ===

/// Alert thresholds as stored: "50,80,100".
pub(crate) fn thresholds_text(thresholds: &[u8]) -> String {
    thresholds.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) fn parse_thresholds(text: &str) -> crate::error::StoreResult<Vec<u8>> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().map_err(|_| crate::error::StoreError::Corrupt { column: "key_thresholds" }))
        .collect()
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),+ }
            }

            pub fn from_db(s: &str) -> Option<Self> {
                match s { $($text => Some(<$ty>::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(UserStatus { Active => "active", Suspended => "suspended" });
text_enum!(KeyState { Active => "active", Deactivated => "deactivated", Deleted => "deleted" });
text_enum!(TransactionKind {
    Grant => "grant",
    Purchase => "purchase",
    SubscriptionGrant => "subscription_grant",
    Usage => "usage",
    Refund => "refund",
    Adjustment => "adjustment",
});
text_enum!(Severity { Info => "info", Warning => "warning", Critical => "critical" });
text_enum!(CacheScope { Key => "key", Account => "account", Credit => "credit" });
text_enum!(LeaseState { Active => "active", Released => "released", Expired => "expired" });
text_enum!(SettleOutcome { Applied => "applied", Duplicate => "duplicate", Refused => "refused" });

/// What a login checks of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user_id: UserId,
    pub status: UserStatus,
    /// Argon2id PHC string; `None` for accounts without a password (Google sign-in, or made
    /// by `layers admin`).
    pub password_hash: Option<String>,
    pub email_verified_at: Option<OffsetDateTime>,
}

/// What a link sent by e-mail is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailPurpose {
    /// Confirms the address given at sign-up.
    Confirm,
    /// Sets a new password.
    Reset,
    /// Confirms a new address for the account.
    ChangeEmail,
}

impl EmailPurpose {
    pub fn as_db(self) -> &'static str {
        match self {
            EmailPurpose::Confirm => "confirm",
            EmailPurpose::Reset => "reset",
            EmailPurpose::ChangeEmail => "change_email",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(EmailPurpose::Confirm),
            "reset" => Some(EmailPurpose::Reset),
            "change_email" => Some(EmailPurpose::ChangeEmail),
            _ => None,
        }
    }
}

/// A single-use link sent by e-mail (only the hash of its token is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailToken {
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
    pub purpose: EmailPurpose,
    /// The address being confirmed, for [`EmailPurpose::ChangeEmail`].
    pub new_email: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A user's second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwoFactor {
    /// The TOTP secret, encrypted by the server (nonce and ciphertext).
    pub secret_enc: Vec<u8>,
    /// `None` while pending: set up, not yet confirmed by a first code.
    pub enabled_at: Option<OffsetDateTime>,
    /// The last TOTP step a code was accepted for.
    pub last_step: Option<i64>,
}

/// An account's billing state at Stripe, as the webhooks left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BillingAccount {
    pub customer: Option<String>,
    pub subscription_id: Option<String>,
    pub subscription_status: Option<String>,
    pub plan: Option<Tier>,
    pub period_end: Option<OffsetDateTime>,
    /// Set when repeated refunds flagged the account for an operator's review.
    pub review_flagged_at: Option<OffsetDateTime>,
}

/// A Stripe event, recorded once with its effect (its id is unique).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeEventRecord {
    pub id: String,
    pub event_type: String,
}

/// Credits a payment grants: a top-up, an auto top-up or a plan's monthly credits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentGrant {
    /// The PaymentIntent (or, without one, the charge or invoice) that paid: refunds and
    /// disputes find the grant by it, and it makes the grant's ledger entry unique.
    pub payment_ref: String,
    pub paid_cents: i64,
    pub credits: MicroCredits,
    pub kind: TransactionKind,
    pub reason: String,
    /// The Checkout Session that sold it, marked completed.
    pub checkout_session: Option<String>,
}

/// A subscription's state as Stripe has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    pub subscription_id: String,
    pub status: String,
    pub plan: Option<Tier>,
    pub period_end: Option<OffsetDateTime>,
    /// When Layers asked Stripe for it: a state fetched earlier never replaces one fetched later.
    pub observed_at: OffsetDateTime,
}

/// An invoice or receipt, listed on the billing page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRecord {
    pub id: String,
    pub number: Option<String>,
    pub amount_paid_cents: i64,
    pub currency: String,
    pub status: String,
    pub hosted_url: Option<String>,
    pub pdf_url: Option<String>,
    pub created_at: OffsetDateTime,
}

/// What one Stripe event (or an auto top-up's own answer) changes, applied in one transaction
/// with the event's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEffect {
    Grant(PaymentGrant),
    /// The charge's cumulative refund is now `amount_refunded_cents`.
    Refund {
        payment_ref: String,
        amount_refunded_cents: i64,
    },
    DisputeOpened {
        dispute_id: String,
        payment_ref: String,
        amount_cents: i64,
    },
    /// A dispute ended; won gives back what it held.
    DisputeClosed {
        dispute_id: String,
        won: bool,
    },
    Subscription(SubscriptionState),
    /// A Checkout Session that bought a plan was paid.
    CheckoutCompleted {
        session_id: String,
    },
    Invoice(InvoiceRecord),
    AutoTopUpSucceeded {
        trigger: String,
    },
    AutoTopUpFailed {
        trigger: String,
    },
}

/// What applying an event did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentOutcome {
    /// The event id was already recorded: nothing changed.
    pub duplicate: bool,
    /// Credits added and removed by this event.
    pub credited: MicroCredits,
    pub debited: MicroCredits,
    pub balance_after: Option<MicroCredits>,
    /// A debit ended the account's credit leases.
    pub leases_revoked: bool,
    /// The tier changed to this.
    pub tier_changed: Option<Tier>,
    /// A refund or dispute was debited, and the account now has this many within the window.
    pub refunds_in_window: Option<i64>,
    /// This event flagged the account for review.
    pub flagged_for_review: bool,
    /// This failure turned auto top-up off.
    pub auto_topup_disabled: bool,
    /// A refund or dispute named a payment this account was not (yet) credited for; a refund is
    /// kept, and taken back when the grant arrives.
    pub unknown_payment: bool,
    /// A purchase named a Checkout Session Layers did not create for this account: not credited.
    pub unknown_checkout: bool,
}

/// A Checkout Session Layers created, and whether its payment was credited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutRecord {
    pub session_id: String,
    pub user_id: UserId,
    /// `payment` or `subscription`.
    pub mode: String,
    /// Credits the purchase grants (zero for a subscription).
    pub credits: MicroCredits,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

/// An account's auto top-up rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoTopUp {
    pub enabled: bool,
    pub threshold: MicroCredits,
    pub amount_credits: i64,
    pub failures: i32,
    pub updated_at: OffsetDateTime,
}
