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

impl PaymentService {
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
        let balance = self.store.balance(user).await?;
        let last_credit = self.store.last_credit_at(user).await?.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let Some(trigger) = autotopup::trigger(&rule, balance, last_credit) else { return Ok(false) };
        if !self.store.claim_auto_topup(user, &trigger, self.clock.now()).await? {
            return Ok(false);
        }
        match self.charge_saved_card(user, &trigger, rule.amount_credits).await {
            Ok(intent) => {
                self.audit
                    .info(
                        Some(user),
                        "auto_topup_started",
                        serde_json::json!({"credits": rule.amount_credits, "payment_intent": intent}),
                    )
                    .await;
                Ok(true)
            }
            Err(why) => {
                // Declined, or no card to charge: the attempt failed (once per trigger, also
                // when Stripe's `payment_intent.payment_failed` reports the same one).
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
                Ok(true)
            }
        }
    }

    /// Confirms an off-session PaymentIntent for `credits` cents: its id, or why it failed (a
    /// text safe to audit). A Stripe outage is an error (the trigger stays claimed, so a
    /// retry waits for the reconciliation to report the intent's fate).
    async fn charge_saved_card(&self, user: UserId, trigger: &str, credits: i64) -> Result<String, String> {
        let customer = self.customer(user).await.map_err(|e| e.to_string())?;
        let methods: wire::List<wire::PaymentMethod> = self
            .stripe
            .get(
                &format!("/v1/customers/{customer}/payment_methods"),
                &[("type", "card".into()), ("limit", "1".into())],
            )
            .await
            .map_err(|e| e.to_string())?;
        let Some(method) = methods.data.first() else { return Err("no saved card".into()) };
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
            Ok(intent) => Ok(intent.id),
            Err(err) if err.is_card_error() => Err(match err {
                super::StripeError::Api { code, .. } => code.unwrap_or_else(|| "card_declined".into()),
                other => other.to_string(),
            }),
            Err(err) => Err(err.to_string()),
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
