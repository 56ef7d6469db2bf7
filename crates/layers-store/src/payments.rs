//! How both backends apply a Stripe event: the orchestration once, over the few row operations
//! each backend implements inside its transaction ([`PaymentTx`]). The money rules are
//! layers-domain's (`payments::refunds`, `payments::plans`, `payments::autotopup`).

use async_trait::async_trait;
use layers_domain::payments::{autotopup, plans, refunds, refunds::PaidGrant};
use layers_domain::{MicroCredits, Tier, UserId};
use time::OffsetDateTime;

use crate::error::StoreResult;
use crate::records::{
    BillingAccount, InvoiceRecord, LedgerOutcome, NewTransaction, PaymentEffect, PaymentGrant, PaymentOutcome,
    StripeEventRecord, SubscriptionState, TransactionKind,
};

/// What recording a payment found.
pub(crate) enum NewPayment {
    Inserted,
    /// Already recorded: granted before.
    Duplicate,
    /// A refund of it arrived first (cumulative `refunded_cents`): the row now holds the grant,
    /// with nothing refunded yet.
    RefundedEarly {
        refunded_cents: i64,
    },
}

/// The row operations of one transaction, on behalf of one user.
#[async_trait]
pub(crate) trait PaymentTx: Send {
    /// Serialises every payment of the account (PostgreSQL: the balance row's lock, taken
    /// before anything is read; SQLite: the write lock the transaction already holds).
    async fn lock_account(&mut self, user: UserId) -> StoreResult<()>;
    /// Records the event id; false when it was already recorded.
    async fn insert_event(&mut self, user: UserId, event: &StripeEventRecord, at: OffsetDateTime) -> StoreResult<bool>;
    async fn insert_payment(&mut self, user: UserId, g: &PaymentGrant, at: OffsetDateTime) -> StoreResult<NewPayment>;
    /// Keeps a refund of a payment not granted yet (the largest cumulative amount seen).
    async fn record_early_refund(
        &mut self,
        user: UserId,
        payment_ref: &str,
        cents: i64,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn paid_grant(&mut self, user: UserId, payment_ref: &str) -> StoreResult<Option<PaidGrant>>;
    async fn set_refunded(&mut self, user: UserId, payment_ref: &str, p: &PaidGrant) -> StoreResult<()>;
    async fn ledger(&mut self, t: &NewTransaction) -> StoreResult<LedgerOutcome>;
    /// Marks a session Layers created for this account completed; false when there is none.
    async fn complete_checkout(&mut self, user: UserId, session: &str, at: OffsetDateTime) -> StoreResult<bool>;
    /// Records an open dispute; false when it was already recorded.
    async fn insert_dispute(
        &mut self,
        user: UserId,
        id: &str,
        payment_ref: &str,
        debited: i64,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Closes an open dispute: what it had debited, `None` if it was not open.
    async fn close_dispute(
        &mut self,
        user: UserId,
        id: &str,
        won: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<i64>>;
    async fn billing_account(&mut self, user: UserId) -> StoreResult<BillingAccount>;
    /// Stores the state unless one observed later is stored; false when it was older.
    async fn save_subscription(&mut self, user: UserId, s: &SubscriptionState, at: OffsetDateTime)
        -> StoreResult<bool>;
    async fn tier(&mut self, user: UserId) -> StoreResult<Tier>;
    /// Sets the tier and announces the account to every node's cache.
    async fn set_tier(&mut self, user: UserId, tier: Tier, at: OffsetDateTime) -> StoreResult<()>;
    async fn upsert_invoice(&mut self, user: UserId, invoice: &InvoiceRecord) -> StoreResult<()>;
    /// Refund and dispute debits since `since`.
    async fn refunds_since(&mut self, user: UserId, since: OffsetDateTime) -> StoreResult<i64>;
    /// Flags the account for review; false when it already was.
    async fn flag_review(&mut self, user: UserId, at: OffsetDateTime) -> StoreResult<bool>;
    /// Moves a pending attempt to `state`; false when it was not pending.
    async fn finish_attempt(&mut self, user: UserId, trigger: &str, state: &str) -> StoreResult<bool>;
    /// The failure count and whether the rule is on.
    async fn auto_topup_failures(&mut self, user: UserId) -> StoreResult<Option<(i32, bool)>>;
    async fn set_auto_topup_failures(&mut self, user: UserId, failures: i32, enabled: bool) -> StoreResult<()>;
}

/// The ledger's idempotency key of a payment's grant.
pub(crate) fn grant_key(payment_ref: &str) -> String {
    format!("stripe:payment:{payment_ref}")
}

/// Applies an event (recorded first: a duplicate changes nothing) and its effects.
pub(crate) async fn apply(
    tx: &mut dyn PaymentTx,
    user: UserId,
    event: Option<&StripeEventRecord>,
    effects: &[PaymentEffect],
    at: OffsetDateTime,
) -> StoreResult<PaymentOutcome> {
    let mut out = PaymentOutcome::default();
    tx.lock_account(user).await?;
    if let Some(event) = event {
        if !tx.insert_event(user, event, at).await? {
            out.duplicate = true;
            return Ok(out);
        }
    }
    let mut refunded = false;
    for effect in effects {
        match effect {
            PaymentEffect::Grant(g) => {
                if grant(tx, user, g, at, &mut out).await? {
                    refunded = true;
                }
            }
            PaymentEffect::Refund { payment_ref, amount_refunded_cents } => {
                if refund(tx, user, payment_ref, *amount_refunded_cents, at, &mut out).await? {
                    refunded = true;
                }
            }
            PaymentEffect::DisputeOpened { dispute_id, payment_ref, amount_cents } => {
                let Some(paid) = tx.paid_grant(user, payment_ref).await? else {
                    out.unknown_payment = true;
                    continue;
                };
                let debit = refunds::dispute_debit(paid, *amount_cents);
                if tx.insert_dispute(user, dispute_id, payment_ref, debit, at).await? && debit > 0 {
                    let key = format!("stripe:dispute:{dispute_id}");
                    debit_entry(tx, user, debit, key, "dispute opened", at, &mut out).await?;
                    refunded = true;
                }
            }
            PaymentEffect::DisputeClosed { dispute_id, won } => {
                if let Some(debited) = tx.close_dispute(user, dispute_id, *won, at).await? {
                    if *won && debited > 0 {
                        let entry = NewTransaction {
                            id: uuid::Uuid::new_v4(),
                            user_id: user,
                            kind: TransactionKind::Adjustment,
                            amount: MicroCredits(debited),
                            idempotency_key: format!("stripe:dispute:{dispute_id}:won"),
                            reason: Some("dispute won: credits restored".into()),
                            request_id: None,
                            allow_negative: false,
                            created_at: at,
                        };
                        if let LedgerOutcome::Applied { balance_after } = tx.ledger(&entry).await? {
                            out.credited = MicroCredits(out.credited.0 + debited);
                            out.balance_after = Some(balance_after);
                        }
                    }
                }
            }
            PaymentEffect::Subscription(s) => {
                let current = tx.billing_account(user).await?;
                if !plans::replaces(current.subscription_id.as_deref(), &s.subscription_id, &s.status) {
                    continue;
                }
                if !tx.save_subscription(user, s, at).await? {
                    continue;
                }
                let tier = plans::tier_of(s.plan, &s.status);
                if tx.tier(user).await? != tier {
                    tx.set_tier(user, tier, at).await?;
                    out.tier_changed = Some(tier);
                }
            }
            PaymentEffect::CheckoutCompleted { session_id } => {
                tx.complete_checkout(user, session_id, at).await?;
            }
            PaymentEffect::Invoice(invoice) => tx.upsert_invoice(user, invoice).await?,
            PaymentEffect::AutoTopUpSucceeded { trigger } => {
                // Only the attempt's own success resets the count (a late one changes nothing).
                if !tx.finish_attempt(user, trigger, "succeeded").await? {
                    continue;
                }
                if let Some((_, enabled)) = tx.auto_topup_failures(user).await? {
                    tx.set_auto_topup_failures(user, 0, enabled).await?;
                }
            }
            PaymentEffect::AutoTopUpFailed { trigger } => {
                if !tx.finish_attempt(user, trigger, "failed").await? {
                    continue;
                }
                if let Some((failures, enabled)) = tx.auto_topup_failures(user).await? {
                    let (failures, off) = autotopup::after_failure(failures);
                    tx.set_auto_topup_failures(user, failures, enabled && !off).await?;
                    out.auto_topup_disabled = enabled && off;
                }
            }
        }
    }
    if refunded {
        let since = at - time::Duration::days(refunds::REVIEW_WINDOW_DAYS);
        let count = tx.refunds_since(user, since).await?;
        out.refunds_in_window = Some(count);
        if count >= refunds::REVIEW_AFTER_REFUNDS {
            out.flagged_for_review = tx.flag_review(user, at).await?;
        }
    }
    Ok(out)
}

/// Credits a payment once; true when a refund that arrived before it was taken back at once.
async fn grant(
    tx: &mut dyn PaymentTx,
    user: UserId,
    g: &PaymentGrant,
    at: OffsetDateTime,
    out: &mut PaymentOutcome,
) -> StoreResult<bool> {
    if let Some(session) = &g.checkout_session {
        // Only a purchase Layers started for this account (not a Payment Link, not another
        // account's session) is credited.
        if !tx.complete_checkout(user, session, at).await? {
            out.unknown_checkout = true;
            return Ok(false);
        }
    }
    let early = match tx.insert_payment(user, g, at).await? {
        NewPayment::Duplicate => return Ok(false),
        NewPayment::Inserted => None,
        NewPayment::RefundedEarly { refunded_cents } => Some(refunded_cents),
    };
    if g.credits.0 > 0 {
        let entry = NewTransaction {
            id: uuid::Uuid::new_v4(),
            user_id: user,
            kind: g.kind,
            amount: g.credits,
            idempotency_key: grant_key(&g.payment_ref),
            reason: Some(g.reason.clone()),
            request_id: None,
            allow_negative: false,
            created_at: at,
        };
        if let LedgerOutcome::Applied { balance_after } = tx.ledger(&entry).await? {
            out.credited = MicroCredits(out.credited.0 + g.credits.0);
            out.balance_after = Some(balance_after);
        }
    }
    match early {
        Some(cents) => refund(tx, user, &g.payment_ref, cents, at, out).await,
        None => Ok(false),
    }
}

/// Takes back what the charge's cumulative refund adds; a refund of a payment not granted yet
/// is kept for its grant. True when something was debited.
async fn refund(
    tx: &mut dyn PaymentTx,
    user: UserId,
    payment_ref: &str,
    amount_refunded_cents: i64,
    at: OffsetDateTime,
    out: &mut PaymentOutcome,
) -> StoreResult<bool> {
    let Some(paid) = tx.paid_grant(user, payment_ref).await? else {
        out.unknown_payment = true;
        tx.record_early_refund(user, payment_ref, amount_refunded_cents, at).await?;
        return Ok(false);
    };
    let Some((debit, after)) = refunds::refund_debit(paid, amount_refunded_cents) else { return Ok(false) };
    let key = format!("stripe:refund:{payment_ref}:{}", after.refunded_cents);
    debit_entry(tx, user, debit, key, "refund", at, out).await?;
    tx.set_refunded(user, payment_ref, &after).await?;
    Ok(true)
}

/// A refund's or dispute's debit: the one ledger entry that may take a balance below zero.
async fn debit_entry(
    tx: &mut dyn PaymentTx,
    user: UserId,
    debit: i64,
    key: String,
    reason: &str,
    at: OffsetDateTime,
    out: &mut PaymentOutcome,
) -> StoreResult<()> {
    let entry = NewTransaction {
        id: uuid::Uuid::new_v4(),
        user_id: user,
        kind: TransactionKind::Refund,
        amount: MicroCredits(-debit),
        idempotency_key: key,
        reason: Some(reason.into()),
        request_id: None,
        allow_negative: true,
        created_at: at,
    };
    if let LedgerOutcome::Applied { balance_after } = tx.ledger(&entry).await? {
        out.debited = MicroCredits(out.debited.0 + debit);
        out.balance_after = Some(balance_after);
        out.leases_revoked = true;
    }
    Ok(())
}
