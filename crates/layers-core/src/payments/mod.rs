//! Payments through Stripe (SPEC §7): credit top-ups and plans through Checkout, the customer
//! portal, auto top-up, the webhook, reconciliation, refunds and disputes. Every change of a
//! balance or a tier is applied by the store with the Stripe event that caused it, once
//! (`layers_store::PaymentStore::apply_payment`); the rules are layers-domain's
//! (`layers_domain::payments`). Invariant: credits are granted only for an event Stripe signed
//! or Layers fetched from Stripe itself, never for a redirect a browser followed.

mod autotopup;
mod checkout;
mod events;
pub mod jobs;
mod reconcile;
pub mod stripe;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use layers_domain::payments::TopUpBounds;
use layers_domain::{Tier, UserId};
use layers_store::{AutoTopUp, BillingAccount, CheckoutRecord, InvoiceRecord, Store};
use secrecy::{ExposeSecret, SecretString};

pub use reconcile::ReconcileReport;
pub use stripe::StripeError;

use crate::audit::Audit;
use crate::broadcast::Broadcaster;
use crate::clock::Clock;
use crate::identity::mailer::Mailer;

/// One plan on sale.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub tier: Tier,
    /// The Stripe Price of its subscription.
    pub price_id: String,
    /// Credits granted with each paid invoice of the plan (0: none).
    pub monthly_credits: i64,
}

/// What the operator configured under `[stripe]`.
#[derive(Clone, Debug)]
pub struct PaymentSettings {
    pub secret_key: SecretString,
    /// Every secret a webhook may be signed with (more than one during a rotation).
    pub webhook_secrets: Vec<SecretString>,
    pub api_base: String,
    /// Packs offered, in credits (1 credit = US$0.01).
    pub packs: Vec<i64>,
    /// Extra credits per purchase, in percent of what was paid.
    pub bonus_percent: u32,
    pub custom: TopUpBounds,
    pub plans: Vec<PlanSettings>,
    pub auto_topup: bool,
    /// How often each node lists the events Stripe could not deliver.
    pub reconcile_every: Duration,
    /// How far back it looks.
    pub reconcile_window: Duration,
    /// Where Checkout and the portal send people back (`https://layers.example`).
    pub public_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Service(#[from] crate::ServiceError),
}

impl From<layers_store::StoreError> for PaymentError {
    fn from(err: layers_store::StoreError) -> Self {
        PaymentError::Service(err.into())
    }
}

pub type PaymentResult<T> = Result<T, PaymentError>;

#[derive(Debug)]
pub struct PaymentService {
    store: Arc<dyn Store>,
    stripe: stripe::StripeClient,
    settings: PaymentSettings,
    audit: Audit,
    broadcaster: Broadcaster,
    /// This node's leases (`None` in an operator command, which holds none).
    billing: Option<crate::billing::Billing>,
    mailer: Mailer,
    clock: Clock,
    checks: autotopup::Checks,
    anomalies: Option<Arc<crate::alerts::AlertService>>,
}

/// The services payments act through.
pub(crate) struct PaymentParts {
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    pub broadcaster: Broadcaster,
    pub billing: Option<crate::billing::Billing>,
    pub mailer: Mailer,
    pub clock: Clock,
    /// The anomaly rules (repeated refunds reach the operator like the others).
    pub anomalies: Option<Arc<crate::alerts::AlertService>>,
}

/// What the billing page shows of an account's payments.
#[derive(Clone, Debug)]
pub struct BillingView {
    pub account: BillingAccount,
    pub invoices: Vec<InvoiceRecord>,
    pub auto_topup: Option<AutoTopUp>,
}

impl PaymentService {
    pub(crate) fn new(parts: PaymentParts, settings: PaymentSettings) -> Result<PaymentService, reqwest::Error> {
        let stripe = stripe::StripeClient::new(&settings.api_base, settings.secret_key.clone())?;
        let PaymentParts { store, audit, broadcaster, billing, mailer, clock, anomalies } = parts;
        Ok(PaymentService {
            store,
            stripe,
            settings,
            audit,
            broadcaster,
            billing,
            mailer,
            clock,
            checks: Default::default(),
            anomalies,
        })
    }

    /// The service as an operator command runs it (`layers admin stripe reconcile`): no leases
    /// of its own; serving nodes learn of changes through Redis or the database feed.
    pub fn for_operator(
        store: Arc<dyn Store>,
        settings: PaymentSettings,
        audit: Audit,
        broadcaster: Broadcaster,
        mailer: Mailer,
    ) -> Result<PaymentService, reqwest::Error> {
        let parts =
            PaymentParts { store, audit, broadcaster, billing: None, mailer, clock: Clock::system(), anomalies: None };
        PaymentService::new(parts, settings)
    }

    pub fn settings(&self) -> &PaymentSettings {
        &self.settings
    }

    /// Where the browser is sent to pay and to manage the plan: Stripe's Checkout and portal,
    /// or the API base itself when it is not Stripe's (a test double serves both pages).
    pub fn page_origins(&self) -> Vec<String> {
        if self.settings.api_base == "https://api.stripe.com" {
            vec!["https://checkout.stripe.com".into(), "https://billing.stripe.com".into()]
        } else {
            vec![self.settings.api_base.clone()]
        }
    }

    /// The plan a tier is sold as, if it is on sale.
    pub fn plan(&self, tier: Tier) -> Option<&PlanSettings> {
        self.settings.plans.iter().find(|p| p.tier == tier)
    }

    fn plan_of_price(&self, price: &str) -> Option<&PlanSettings> {
        self.settings.plans.iter().find(|p| p.price_id == price)
    }

    pub async fn billing_view(&self, user: UserId) -> PaymentResult<BillingView> {
        Ok(BillingView {
            account: self.store.billing_account(user).await?,
            invoices: self.store.invoices(user, 24).await?,
            auto_topup: self.store.auto_topup(user).await?,
        })
    }

    /// A Checkout Session this account started, and whether its payment was credited.
    pub async fn checkout(&self, user: UserId, session_id: &str) -> PaymentResult<Option<CheckoutRecord>> {
        Ok(self.store.checkout(user, session_id).await?)
    }

    /// The webhook secrets, as bytes, for signature checks.
    pub fn webhook_secrets(&self) -> Vec<&[u8]> {
        self.settings.webhook_secrets.iter().map(|s| s.expose_secret().as_bytes()).collect()
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.settings.public_url)
    }

    /// The account's Stripe customer, created the first time it is needed: the creation's
    /// idempotency key is the account, so two nodes (or two clicks) make one customer.
    pub(crate) async fn customer(&self, user: UserId) -> PaymentResult<String> {
        if let Some(customer) = self.store.billing_account(user).await?.customer {
            return Ok(customer);
        }
        let account = self.store.user(user).await?.ok_or(crate::ServiceError::NotFound("account"))?;
        let form = vec![("email".to_owned(), account.email), ("metadata[layers_user]".to_owned(), user.to_string())];
        let created: wire::Customer =
            self.stripe.post("/v1/customers", &form, &format!("layers-customer-{user}")).await?;
        Ok(self.store.set_stripe_customer(user, &created.id, self.clock.now()).await?)
    }
}
