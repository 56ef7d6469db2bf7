//! One Stripe event → the account it concerns and the effects to apply with its record.
//! Out-of-order delivery converges on Stripe's current state: a subscription event is never
//! trusted for the subscription's state, which is fetched; a refund event carries the charge's
//! cumulative refund; a dispute's charge is fetched for its payment and customer.

use layers_domain::payments::credits_for;
use layers_domain::UserId;
use layers_store::{
    InvoiceRecord, PaymentEffect, PaymentGrant, PaymentOutcome, Severity, StripeEventRecord, SubscriptionState,
    TransactionKind,
};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::wire::{self, Event};
use super::{PaymentResult, PaymentService};

/// What became of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    /// Applied (or recorded without effect) for this account.
    Applied { user: UserId, duplicate: bool },
    /// Not for Layers: an event type it does not act on, or an object no account owns.
    Ignored(&'static str),
}

/// Why an event cannot be read: the webhook answers 400 (it will never read better).
#[derive(Debug, thiserror::Error)]
#[error("the event's object could not be read")]
pub struct Unreadable;

enum Plan {
    Apply { user: UserId, effects: Vec<PaymentEffect> },
    Ignore(&'static str),
}

fn object<T: DeserializeOwned>(event: &Event) -> Result<T, Unreadable> {
    serde_json::from_value(event.data.object.clone()).map_err(|_| Unreadable)
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl PaymentService {
    /// Applies an event Stripe signed (or Layers fetched from Stripe), once.
    pub async fn process_event(&self, event: &Event) -> PaymentResult<Result<Processed, Unreadable>> {
        let plan = match self.plan_event(event).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(unreadable)) => return Ok(Err(unreadable)),
            // Stripe does not know the object the event names (deleted, or another account's):
            // no retry will change that.
            Err(super::PaymentError::Stripe(super::StripeError::Api { status, .. }))
                if (400..500).contains(&status) && status != 409 && status != 429 =>
            {
                tracing::warn!(event_id = %event.id, event_type = %event.kind, status, "Stripe refused to show the event's object; ignored");
                return Ok(Ok(Processed::Ignored("Stripe does not show the event's object")));
            }
            Err(err) => return Err(err),
        };
        let (user, effects) = match plan {
            Plan::Apply { user, effects } => (user, effects),
            Plan::Ignore(why) => {
                tracing::debug!(event_id = %event.id, event_type = %event.kind, why, "Stripe event ignored");
                return Ok(Ok(Processed::Ignored(why)));
            }
        };
        let record = StripeEventRecord { id: event.id.clone(), event_type: event.kind.clone() };
        let outcome = self.store.apply_payment(user, Some(&record), &effects, self.clock.now()).await?;
        if !outcome.duplicate {
            self.after(user, &event.kind, &outcome).await;
        }
        Ok(Ok(Processed::Applied { user, duplicate: outcome.duplicate }))
    }

    async fn plan_event(&self, event: &Event) -> PaymentResult<Result<Plan, Unreadable>> {
        let plan = match event.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                let Ok(session) = object::<wire::CheckoutSession>(event) else { return Ok(Err(Unreadable)) };
                self.checkout_completed(session).await?
            }
            "checkout.session.async_payment_failed" => {
                let Ok(session) = object::<wire::CheckoutSession>(event) else { return Ok(Err(Unreadable)) };
                match self.owner(session.customer.as_deref()).await? {
                    Some(user) => {
                        self.audit
                            .record(
                                Some(user),
                                "payment_failed",
                                serde_json::json!({"checkout_session": session.id}),
                                Severity::Warning,
                                None,
                            )
                            .await;
                        Plan::Apply { user, effects: Vec::new() }
                    }
                    None => Plan::Ignore("no account has this customer"),
                }
            }
            "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
                let Ok(sub) = object::<wire::Subscription>(event) else { return Ok(Err(Unreadable)) };
                // The event's copy may be older than another already applied: ask Stripe.
                let (current, asked) = self.fetch_subscription(&sub.id).await?;
                match self.owner(current.customer.as_deref()).await? {
                    Some(user) => {
                        Plan::Apply { user, effects: vec![PaymentEffect::Subscription(self.state_of(&current, asked))] }
                    }
                    None => Plan::Ignore("no account has this customer"),
                }
            }
            "invoice.paid" | "invoice.payment_failed" => {
                let Ok(invoice) = object::<wire::Invoice>(event) else { return Ok(Err(Unreadable)) };
                self.invoice(invoice, event.kind == "invoice.paid").await?
            }
            "charge.refunded" => {
                let Ok(charge) = object::<wire::Charge>(event) else { return Ok(Err(Unreadable)) };
                match self.owner(charge.customer.as_deref()).await? {
                    Some(user) => Plan::Apply {
                        user,
                        effects: vec![PaymentEffect::Refund {
                            payment_ref: charge.payment_intent.unwrap_or(charge.id),
                            amount_refunded_cents: charge.amount_refunded,
                        }],
                    },
                    None => Plan::Ignore("no account has this customer"),
                }
            }
            "charge.dispute.created" | "charge.dispute.closed" => {
                let Ok(dispute) = object::<wire::Dispute>(event) else { return Ok(Err(Unreadable)) };
                let charge: wire::Charge = self.stripe.get(&format!("/v1/charges/{}", dispute.charge), &[]).await?;
                let Some(user) = self.owner(charge.customer.as_deref()).await? else {
                    return Ok(Ok(Plan::Ignore("no account has this customer")));
                };
                let effect = if event.kind == "charge.dispute.created" {
                    PaymentEffect::DisputeOpened {
                        dispute_id: dispute.id,
                        payment_ref: dispute.payment_intent.or(charge.payment_intent).unwrap_or(charge.id),
                        amount_cents: dispute.amount,
                    }
                } else {
                    // `warning_closed`: an inquiry that never became a chargeback.
                    let won = matches!(dispute.status.as_str(), "won" | "warning_closed");
                    PaymentEffect::DisputeClosed { dispute_id: dispute.id, won }
                };
                Plan::Apply { user, effects: vec![effect] }
            }
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let Ok(intent) = object::<wire::PaymentIntent>(event) else { return Ok(Err(Unreadable)) };
                self.intent(intent, event.kind == "payment_intent.succeeded").await?
            }
            _ => Plan::Ignore("an event type Layers does not act on"),
        };
        Ok(Ok(plan))
    }

    /// A subscription as Stripe has it now, and when Layers asked.
    async fn fetch_subscription(&self, id: &str) -> PaymentResult<(wire::Subscription, OffsetDateTime)> {
        let asked = self.clock.now();
        let current = self.stripe.get(&format!("/v1/subscriptions/{id}"), &[]).await?;
        Ok((current, asked))
    }

    /// The account a Stripe customer belongs to.
    async fn owner(&self, customer: Option<&str>) -> PaymentResult<Option<UserId>> {
        match customer {
            Some(c) => Ok(self.store.user_of_stripe_customer(c).await?),
            None => Ok(None),
        }
    }

    fn state_of(&self, sub: &wire::Subscription, observed_at: OffsetDateTime) -> SubscriptionState {
        let item = sub.items.data.first();
        let plan = item.and_then(|i| self.plan_of_price(&i.price.id)).map(|p| p.tier);
        let end = sub.current_period_end.or_else(|| item.and_then(|i| i.current_period_end));
        SubscriptionState {
            subscription_id: sub.id.clone(),
            status: sub.status.clone(),
            plan,
            period_end: end.map(at),
            observed_at,
        }
    }

    async fn checkout_completed(&self, session: wire::CheckoutSession) -> PaymentResult<Plan> {
        let Some(user) = self.owner(session.customer.as_deref()).await? else {
            return Ok(Plan::Ignore("no account has this customer"));
        };
        if session.metadata.get("layers_user").is_some_and(|u| *u != user.to_string()) {
            tracing::warn!(user_id = %user, "a Checkout Session's metadata names another account; ignored");
            return Ok(Plan::Ignore("the session names another account"));
        }
        let mut effects = Vec::new();
        match session.mode.as_str() {
            // Only a top-up Layers sold (its metadata, in US dollars); the store also requires
            // the session to be one it recorded for this account.
            "payment"
                if session.payment_status == "paid"
                    && session.metadata.get("purpose").map(String::as_str) == Some("top_up")
                    && session.currency.as_deref() == Some("usd") =>
            {
                let paid = session.amount_total.unwrap_or(0);
                let bonus = session.metadata.get("bonus_percent").and_then(|b| b.parse().ok()).unwrap_or(0);
                let Some(credits) = credits_for(paid, bonus) else { return Ok(Plan::Ignore("an amount out of range")) };
                effects.push(PaymentEffect::Grant(PaymentGrant {
                    payment_ref: session.payment_intent.clone().unwrap_or_else(|| session.id.clone()),
                    paid_cents: paid,
                    credits,
                    kind: TransactionKind::Purchase,
                    reason: "credit top-up".into(),
                    checkout_session: Some(session.id),
                }));
            }
            "subscription" => {
                if let Some(id) = &session.subscription {
                    let (current, asked) = self.fetch_subscription(id).await?;
                    effects.push(PaymentEffect::Subscription(self.state_of(&current, asked)));
                }
                effects.push(PaymentEffect::CheckoutCompleted { session_id: session.id.clone() });
            }
            // Paid later (a bank debit): `async_payment_succeeded` grants it.
            _ => {}
        }
        Ok(Plan::Apply { user, effects })
    }

    async fn invoice(&self, invoice: wire::Invoice, paid: bool) -> PaymentResult<Plan> {
        let Some(user) = self.owner(invoice.customer.as_deref()).await? else {
            return Ok(Plan::Ignore("no account has this customer"));
        };
        let mut effects = vec![PaymentEffect::Invoice(InvoiceRecord {
            id: invoice.id.clone(),
            number: invoice.number.clone(),
            amount_paid_cents: invoice.amount_paid,
            currency: invoice.currency.clone(),
            status: invoice.status.clone().unwrap_or_else(|| if paid { "paid".into() } else { "open".into() }),
            hosted_url: invoice.hosted_invoice_url.clone(),
            pdf_url: invoice.invoice_pdf.clone(),
            created_at: at(invoice.created),
        })];
        if !paid {
            self.audit
                .record(
                    Some(user),
                    "invoice_payment_failed",
                    serde_json::json!({"invoice": invoice.id}),
                    Severity::Warning,
                    None,
                )
                .await;
            return Ok(Plan::Apply { user, effects });
        }
        // A plan's monthly credits, with the first and each renewal invoice of its subscription
        // that was paid (not a proration when the plan changes, not a free invoice).
        let renewal = matches!(invoice.billing_reason.as_deref(), Some("subscription_create" | "subscription_cycle"));
        if let (Some(sub), true) = (&invoice.subscription, renewal && invoice.amount_paid > 0) {
            let (current, _) = self.fetch_subscription(sub).await?;
            let plan = current.items.data.first().and_then(|i| self.plan_of_price(&i.price.id));
            if let Some(plan) = plan.filter(|p| p.monthly_credits > 0) {
                effects.push(PaymentEffect::Grant(PaymentGrant {
                    payment_ref: invoice.payment_intent.or(invoice.charge).unwrap_or(invoice.id),
                    paid_cents: invoice.amount_paid,
                    credits: layers_domain::MicroCredits(plan.monthly_credits.saturating_mul(1_000_000)),
                    kind: TransactionKind::SubscriptionGrant,
                    reason: format!("monthly credits of the {} plan", plan.tier.label()),
                    checkout_session: None,
                }));
            }
        }
        Ok(Plan::Apply { user, effects })
    }

    async fn intent(&self, intent: wire::PaymentIntent, succeeded: bool) -> PaymentResult<Plan> {
        if intent.metadata.get("purpose").map(String::as_str) != Some("auto_topup") {
            // Checkout's own payments are credited by `checkout.session.completed`.
            return Ok(Plan::Ignore("not an auto top-up"));
        }
        let Some(user) = self.owner(intent.customer.as_deref()).await? else {
            return Ok(Plan::Ignore("no account has this customer"));
        };
        let trigger = intent.metadata.get("trigger").cloned().unwrap_or_default();
        let effects = if succeeded {
            let Some(credits) = credits_for(intent.amount_received, 0) else {
                return Ok(Plan::Ignore("an amount out of range"));
            };
            vec![
                PaymentEffect::Grant(PaymentGrant {
                    payment_ref: intent.id,
                    paid_cents: intent.amount_received,
                    credits,
                    kind: TransactionKind::Purchase,
                    reason: "auto top-up".into(),
                    checkout_session: None,
                }),
                PaymentEffect::AutoTopUpSucceeded { trigger },
            ]
        } else {
            vec![PaymentEffect::AutoTopUpFailed { trigger }]
        };
        Ok(Plan::Apply { user, effects })
    }

    /// What follows an applied event: every node told of a new tier or of ended leases, the
    /// audit trail, and the e-mail when auto top-up turned itself off.
    pub(crate) async fn after(&self, user: UserId, cause: &str, o: &PaymentOutcome) {
        if o.tier_changed.is_some() || o.leases_revoked {
            // This node at once; the others through Redis or the change feed (the store wrote
            // an account event with a tier change).
            self.broadcaster.publish(crate::broadcast::Notice::Account(user)).await;
            if let Some(billing) = &self.billing {
                billing.account_changed(user);
            }
        }
        if let Some(tier) = o.tier_changed {
            self.audit.info(Some(user), "plan_changed", serde_json::json!({"tier": tier, "cause": cause})).await;
        }
        if o.credited.is_positive() {
            self.audit
                .info(
                    Some(user),
                    "credits_purchased",
                    serde_json::json!({"micro_credits": o.credited.0, "cause": cause}),
                )
                .await;
        }
        if o.debited.is_positive() {
            let meta = serde_json::json!({"micro_credits": o.debited.0, "cause": cause,
                                          "balance_micros": o.balance_after.map(|b| b.0)});
            self.audit.record(Some(user), "credits_refunded", meta, Severity::Warning, None).await;
            if o.balance_after.is_some_and(|b| b.0 < 0) {
                let meta = serde_json::json!({"balance_micros": o.balance_after.map(|b| b.0)});
                self.audit.record(Some(user), "balance_negative", meta, Severity::Warning, None).await;
            }
        }
        if o.flagged_for_review {
            let meta = serde_json::json!({"refunds_in_window": o.refunds_in_window});
            self.audit.record(Some(user), "account_flagged_for_review", meta, Severity::Critical, None).await;
            if let Some(anomalies) = &self.anomalies {
                anomalies.refunds_flagged(user, o.refunds_in_window).await;
            }
        }
        if o.unknown_payment {
            tracing::warn!(user_id = %user, cause, "a Stripe event names a payment not credited (yet); a refund is kept for it");
        }
        if o.unknown_checkout {
            tracing::warn!(user_id = %user, cause, "a paid Checkout Session Layers did not create; not credited");
        }
        if o.auto_topup_disabled {
            self.auto_topup_turned_off(user).await;
        }
    }
}
