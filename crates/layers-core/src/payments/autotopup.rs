//! Auto top-up: when an account's balance falls below its threshold, one off-session
//! PaymentIntent with the card saved at checkout. Which node buys is decided by the database
//! (`claim_auto_topup`, one row per (account, trigger)), and the PaymentIntent's idempotency
//! key is the same trigger, so even two claims would make one charge. The credits come with
//! `payment_intent.succeeded`, like every other purchase: from Stripe, once.

use layers_domain::payments::autotopup::{self, Rule};
use layers_domain::UserId;
use layers_store::{PaymentEffect, Severity};

use super::{wire, PaymentResult, PaymentService};
use crate::identity::letters;

/// How an attempt ended, as far as this node knows.
enum Attempt {
    /// Stripe took it (succeeded or processing): `payment_intent.succeeded` credits it.
    Started(String),
    /// Declined, needs the card holder, or no card to charge: a failure.
    Failed(String),
    /// Stripe did not answer: the outcome is unknown, and the same trigger is tried again later
    /// under the same idempotency key (Stripe answers with the first attempt's outcome).
    Unanswered(String),
}

/// Auto top-up checks in flight on this node: one per account at most, a few at a time, off the
/// alert job's loop (a slow Stripe must not delay alerts).
#[derive(Debug)]
pub(crate) struct Checks {
    running: tokio::sync::Semaphore,
    queued: std::sync::Mutex<std::collections::HashSet<UserId>>,
}

impl Default for Checks {
    fn default() -> Self {
        Checks { running: tokio::sync::Semaphore::new(4), queued: Default::default() }
    }
}

impl PaymentService {
    /// Checks the account's auto top-up in a task of its own (unless one is queued already).
    pub fn check_auto_topup_soon(self: &std::sync::Arc<Self>, user: UserId, tasks: &crate::tasks::Tasks) {
        if !self.settings.auto_topup {
            return;
        }
        {
            let mut queued = self.checks.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !queued.insert(user) {
                return;
            }
        }
        let this = self.clone();
        tasks.spawn("auto-topup-check", async move {
            if let Ok(_permit) = this.checks.running.acquire().await {
                if let Err(err) = this.check_auto_topup(user).await {
                    tracing::warn!(error = %crate::error::chain(&err), user_id = %user, "auto top-up check failed");
                }
            }
            this.checks.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&user);
        });
    }

    /// Buys credits if the account's rule fires now; true when this node started a purchase.
    pub async fn check_auto_topup(&self, user: UserId) -> PaymentResult<bool> {
        if !self.settings.auto_topup {
            return Ok(false);
        }
        let Some(stored) = self.store.auto_topup(user).await? else { return Ok(false) };
        let rule = Rule {
            enabled: stored.enabled,
            threshold: stored.threshold,
            amount_credits: stored.amount_credits,
            failures: stored.failures,
        };
        // The last credit first, the balance second: a credit landing in between then shows in
        // the balance (no purchase), never as a new trigger with the old, low balance.
        let last_credit = self.store.last_credit_at(user).await?.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let balance = self.store.balance(user).await?;
        let Some(trigger) = autotopup::trigger(&rule, balance, last_credit) else { return Ok(false) };
        let now = self.clock.now();
        if self.store.auto_topups_since(user, now - time::Duration::days(1)).await? >= autotopup::MAX_PER_DAY {
            tracing::warn!(user_id = %user, "auto top-up reached its daily number of purchases; waiting");
            return Ok(false);
        }
        if !self.store.claim_auto_topup(user, &trigger, now).await? {
            return Ok(false);
        }
        match self.charge_saved_card(user, &trigger, rule.amount_credits).await {
            Attempt::Started(intent) => {
                let meta = serde_json::json!({"credits": rule.amount_credits, "payment_intent": intent});
                self.audit.info(Some(user), "auto_topup_started", meta).await;
            }
            Attempt::Unanswered(why) => {
                tracing::warn!(user_id = %user, error = %why, "auto top-up: Stripe did not answer; trying again later");
            }
            Attempt::Failed(why) => {
                // Once per trigger, also when Stripe's `payment_intent.payment_failed` reports
                // the same attempt.
                self.audit
                    .record(
                        Some(user),
                        "auto_topup_failed",
                        serde_json::json!({"reason": why}),
                        Severity::Warning,
                        None,
                    )
                    .await;
                let failed = [PaymentEffect::AutoTopUpFailed { trigger }];
                let outcome = self.store.apply_payment(user, None, &failed, self.clock.now()).await?;
                if outcome.auto_topup_disabled {
                    self.auto_topup_turned_off(user).await;
                }
            }
        }
        Ok(true)
    }

    /// Confirms an off-session PaymentIntent for `credits` cents with the saved card.
    async fn charge_saved_card(&self, user: UserId, trigger: &str, credits: i64) -> Attempt {
        let customer = match self.customer(user).await {
            Ok(c) => c,
            Err(e) => return Attempt::Unanswered(e.to_string()),
        };
        let methods: wire::List<wire::PaymentMethod> = match self
            .stripe
            .get(
                &format!("/v1/customers/{customer}/payment_methods"),
                &[("type", "card".into()), ("limit", "1".into())],
            )
            .await
        {
            Ok(m) => m,
            Err(e) => return Attempt::Unanswered(e.to_string()),
        };
        let Some(method) = methods.data.first() else { return Attempt::Failed("no saved card".into()) };
        let form = vec![
            ("amount".to_owned(), credits.to_string()),
            ("currency".to_owned(), "usd".to_owned()),
            ("customer".to_owned(), customer),
            ("payment_method".to_owned(), method.id.clone()),
            ("off_session".to_owned(), "true".to_owned()),
            ("confirm".to_owned(), "true".to_owned()),
            ("description".to_owned(), format!("Layers auto top-up ({credits} credits)")),
            ("metadata[layers_user]".to_owned(), user.to_string()),
            ("metadata[purpose]".to_owned(), "auto_topup".to_owned()),
            ("metadata[trigger]".to_owned(), trigger.to_owned()),
        ];
        let key = format!("layers-autotopup-{user}-{trigger}");
        match self.stripe.post::<wire::PaymentIntent>("/v1/payment_intents", &form, &key).await {
            Ok(intent) if matches!(intent.status.as_str(), "succeeded" | "processing") => Attempt::Started(intent.id),
            // `requires_action` (the bank wants the card holder) and the like: this cannot
            // finish while the person is away.
            Ok(intent) => Attempt::Failed(intent.status),
            // Declined, or refused outright (the card was removed): Stripe's answer is final.
            Err(super::StripeError::Api { status, kind, code, .. })
                if (400..500).contains(&status) && status != 409 && status != 429 =>
            {
                Attempt::Failed(code.unwrap_or(kind))
            }
            Err(err) => Attempt::Unanswered(err.to_string()),
        }
    }

    /// Auto top-up turned itself off after repeated failures: the owner is told by e-mail.
    pub(crate) async fn auto_topup_turned_off(&self, user: UserId) {
        let meta = serde_json::json!({"failures": autotopup::MAX_FAILURES});
        self.audit.record(Some(user), "auto_topup_disabled", meta, Severity::Warning, None).await;
        match self.store.user(user).await {
            Ok(Some(account)) => self.mailer.send(letters::auto_topup_off(
                &account.email,
                autotopup::MAX_FAILURES,
                &self.link("/dashboard/billing"),
            )),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), user_id = %user, "cannot read the account to e-mail it")
            }
        }
    }
}
