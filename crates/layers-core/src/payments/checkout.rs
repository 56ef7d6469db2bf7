//! Starting a purchase: a Checkout Session per purchase (its idempotency key is the buy form's
//! one-time nonce, so a double click opens one session and a second purchase its own), a
//! subscription through Checkout, and the customer portal for everything after.

use layers_domain::payments::{credits_for, MICROS_PER_CENT};
use layers_domain::{MicroCredits, Tier, UserId};
use layers_store::CheckoutRecord;

use super::{wire, PaymentResult, PaymentService};
use crate::ServiceError;

/// Where the browser goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect(pub String);

impl PaymentService {
    /// A Checkout Session (mode `payment`) for `credits` credits; `nonce` is the form's own.
    pub async fn start_top_up(&self, user: UserId, credits: i64, nonce: &str) -> PaymentResult<Redirect> {
        let pack = self.settings.packs.contains(&credits);
        let bounds = self.settings.custom;
        if !pack && (credits < bounds.min_credits || credits > bounds.max_credits) {
            return Err(ServiceError::Invalid("the amount must be a pack or within the top-up limits").into());
        }
        let nonce = clean_nonce(nonce)?;
        let customer = self.customer(user).await?;
        let bonus = self.settings.bonus_percent;
        let granted = credits_for(credits, bonus).ok_or(ServiceError::Invalid("the amount is out of range"))?;
        let mut form = vec![
            ("mode", "payment".to_owned()),
            ("customer", customer),
            ("client_reference_id", user.to_string()),
            ("metadata[layers_user]", user.to_string()),
            ("metadata[purpose]", "top_up".to_owned()),
            ("metadata[credits]", credits.to_string()),
            ("metadata[bonus_percent]", bonus.to_string()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("line_items[0][price_data][currency]", "usd".to_owned()),
            ("line_items[0][price_data][unit_amount]", credits.to_string()),
            ("line_items[0][price_data][product_data][name]", format!("Layers credits ({})", group(granted))),
            ("invoice_creation[enabled]", "true".to_owned()),
            ("payment_intent_data[metadata][layers_user]", user.to_string()),
            ("success_url", self.link("/dashboard/billing/checkout/success?session_id={CHECKOUT_SESSION_ID}")),
            ("cancel_url", self.link("/dashboard/billing/checkout/cancelled")),
        ];
        if self.settings.auto_topup {
            // The card can then pay auto top-ups while the person is away.
            form.push(("payment_intent_data[setup_future_usage]", "off_session".to_owned()));
        }
        let started = serde_json::json!({"credits": credits});
        self.create_session(user, form, &format!("layers-checkout-{user}-{nonce}"), granted, started).await
    }

    /// Subscribes to `tier`'s plan through Checkout; an account with a live subscription is
    /// sent to the portal instead, where plans change without a second subscription.
    pub async fn start_plan(&self, user: UserId, tier: Tier, nonce: &str) -> PaymentResult<Redirect> {
        let plan = self.plan(tier).ok_or(ServiceError::Invalid("this plan is not on sale"))?.clone();
        let account = self.store.billing_account(user).await?;
        let live =
            account.subscription_status.as_deref().is_some_and(layers_domain::payments::plans::status_grants_plan);
        if live {
            return self.portal(user).await;
        }
        let nonce = clean_nonce(nonce)?;
        let customer = self.customer(user).await?;
        let form = vec![
            ("mode", "subscription".to_owned()),
            ("customer", customer),
            ("client_reference_id", user.to_string()),
            ("metadata[layers_user]", user.to_string()),
            ("metadata[purpose]", "plan".to_owned()),
            ("metadata[tier]", tier.to_string()),
            ("line_items[0][price]", plan.price_id.clone()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("subscription_data[metadata][layers_user]", user.to_string()),
            ("success_url", self.link("/dashboard/billing/checkout/success?session_id={CHECKOUT_SESSION_ID}")),
            ("cancel_url", self.link("/dashboard/billing/checkout/cancelled")),
        ];
        let started = serde_json::json!({"plan": tier});
        self.create_session(user, form, &format!("layers-plan-{user}-{nonce}"), MicroCredits::ZERO, started).await
    }

    /// A customer portal session: plan changes, payment methods, cancellation, invoices.
    pub async fn portal(&self, user: UserId) -> PaymentResult<Redirect> {
        let customer = self.customer(user).await?;
        let form = vec![("customer".to_owned(), customer), ("return_url".to_owned(), self.link("/dashboard/billing"))];
        // Each visit is its own session; the key only collapses a retried call.
        let key = format!("layers-portal-{user}-{}", uuid::Uuid::new_v4().simple());
        let session: wire::PortalSession = self.stripe.post("/v1/billing_portal/sessions", &form, &key).await?;
        Ok(Redirect(session.url))
    }

    /// Creates the Checkout Session `form` describes, records it (it grants `credits` when paid;
    /// a plan grants none), audits its start, and says where the browser goes.
    async fn create_session(
        &self,
        user: UserId,
        form: Vec<(&str, String)>,
        key: &str,
        credits: MicroCredits,
        mut started: serde_json::Value,
    ) -> PaymentResult<Redirect> {
        // The form's own `mode` (payment or subscription) is the record's.
        let mode = form.iter().find(|(k, _)| *k == "mode").map(|(_, v)| v.clone()).unwrap_or_default();
        let form: Vec<(String, String)> = form.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let session: wire::CheckoutSession = self.stripe.post("/v1/checkout/sessions", &form, key).await?;
        self.store
            .record_checkout(&CheckoutRecord {
                session_id: session.id.clone(),
                user_id: user,
                mode,
                credits,
                created_at: self.clock.now(),
                completed_at: None,
            })
            .await?;
        started["checkout_session"] = serde_json::json!(session.id);
        self.audit.info(Some(user), "checkout_started", started).await;
        session
            .url
            .map(Redirect)
            .ok_or_else(|| ServiceError::Refused("Stripe did not return a payment page".into()).into())
    }

    /// Sets the account's auto top-up rule (buy `amount_credits` when the balance is below
    /// `threshold_credits`).
    pub async fn set_auto_topup(
        &self,
        user: UserId,
        enabled: bool,
        threshold_credits: i64,
        amount_credits: i64,
    ) -> PaymentResult<()> {
        if !self.settings.auto_topup {
            return Err(ServiceError::Invalid("auto top-up is not enabled on this server").into());
        }
        if !(1..=self.settings.custom.max_credits).contains(&threshold_credits) {
            return Err(ServiceError::Invalid(
                "the threshold must be at least 1 credit and at most the largest top-up",
            )
            .into());
        }
        let bounds = self.settings.custom;
        if amount_credits < bounds.min_credits || amount_credits > bounds.max_credits {
            return Err(ServiceError::Invalid("the amount to buy must be within the top-up limits").into());
        }
        let rule = layers_store::AutoTopUp {
            enabled,
            threshold: MicroCredits(threshold_credits * MICROS_PER_CENT),
            amount_credits,
            failures: 0,
            updated_at: self.clock.now(),
        };
        self.store.set_auto_topup(user, &rule).await?;
        self.audit
            .info(
                Some(user),
                "auto_topup_changed",
                serde_json::json!({"enabled": enabled, "threshold_credits": threshold_credits, "amount_credits": amount_credits}),
            )
            .await;
        Ok(())
    }
}

/// The form's nonce, as part of an idempotency key: a short token of safe characters.
fn clean_nonce(nonce: &str) -> Result<&str, ServiceError> {
    let ok = (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(nonce)
    } else {
        Err(ServiceError::Invalid("the form has expired; open the billing page again"))
    }
}

fn group(credits: MicroCredits) -> String {
    format!("{} credits", layers_domain::money::group_thousands(&(credits.0 / MICROS_PER_CENT).to_string()))
}
