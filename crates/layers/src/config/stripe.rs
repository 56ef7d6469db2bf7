//! `[stripe]`: card payments (SPEC §7). Off unless `secret_key` is set; then the webhook
//! secrets are required (an unverifiable webhook would let anyone grant credits), and
//! production requires a live-looking HTTPS API base.

use std::time::Duration;

use layers_core::payments::{PaymentSettings, PlanSettings};
use layers_domain::payments::TopUpBounds;
use layers_domain::Tier;
use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::{Config, Problem};

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Packs offered when none are configured, in credits ($10, $25, $50, $100).
pub const DEFAULT_PACKS: [i64; 4] = [1_000, 2_500, 5_000, 10_000];

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// `sk_live_…` (or `sk_test_…` outside production). Setting it turns payments on.
    pub secret_key: Option<Secret>,
    /// Webhook signing secrets (`whsec_…`); more than one during a rotation.
    #[serde(default)]
    pub webhook_secrets: Vec<Secret>,
    /// Default `https://api.stripe.com`; tests point it at a mock.
    pub api_base: Option<String>,
    /// Credit packs offered on the billing page (1 credit = US$0.01).
    pub packs: Option<Vec<i64>>,
    /// Extra credits on every purchase, in percent (default 0).
    pub bonus_percent: Option<u32>,
    /// The smallest and largest custom top-up, in credits (defaults 500 and 500,000).
    pub min_top_up: Option<i64>,
    pub max_top_up: Option<i64>,
    /// Stripe Price ids of the plans on sale.
    #[serde(default)]
    pub plans: PlanPrices,
    /// Credits granted with each paid invoice of a plan.
    #[serde(default)]
    pub included_credits: PlanCredits,
    /// Offer auto top-up with a card saved at checkout (default true).
    pub auto_topup: Option<bool>,
    /// How often each node lists the events Stripe could not deliver (default 900 s).
    pub reconcile_every_secs: Option<u64>,
    /// How far back it looks (default 72 h, Stripe's retry period).
    pub reconcile_window_hours: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPrices {
    pub starter: Option<String>,
    pub pro: Option<String>,
    pub team: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanCredits {
    pub starter: Option<i64>,
    pub pro: Option<i64>,
    pub team: Option<i64>,
}

pub(super) fn check_stripe(
    c: &Config,
    production: bool,
    public_url: &str,
    problems: &mut Vec<Problem>,
) -> Option<PaymentSettings> {
    let s = &c.stripe;
    let Some(secret_key) = &s.secret_key else {
        if !s.webhook_secrets.is_empty() || s.plans.starter.is_some() || s.plans.pro.is_some() || s.plans.team.is_some()
        {
            problems.push(Problem::new("stripe.secret_key", "is required when any other [stripe] setting is set"));
        }
        return None;
    };
    let key = secret_key.expose();
    if !(key.starts_with("sk_") || key.starts_with("rk_")) {
        problems.push(Problem::new("stripe.secret_key", "must be a Stripe secret or restricted key (sk_… or rk_…)"));
    }
    if production && (key.starts_with("sk_test_") || key.starts_with("rk_test_")) {
        problems.push(Problem::new("stripe.secret_key", "production requires a live key (sk_live_…), not a test key"));
    }
    if s.webhook_secrets.is_empty() {
        problems.push(Problem::new(
            "stripe.webhook_secrets",
            "is required with stripe.secret_key: without it no webhook can be verified and no payment credited \
             (copy the endpoint's signing secret, whsec_…, from Stripe)",
        ));
    }
    for w in &s.webhook_secrets {
        if w.expose().len() < 16 {
            problems.push(Problem::new("stripe.webhook_secrets", "each secret must be Stripe's whsec_… value"));
        }
    }
    let api_base = s.api_base.as_deref().unwrap_or(DEFAULT_API_BASE).trim_end_matches('/').to_owned();
    if production && api_base != DEFAULT_API_BASE {
        problems.push(Problem::new("stripe.api_base", format!("must be {DEFAULT_API_BASE} in production")));
    }
    if !(api_base.starts_with("https://")
        || api_base.starts_with("http://127.0.0.1")
        || api_base.starts_with("http://localhost"))
    {
        problems
            .push(Problem::new("stripe.api_base", "must be an https:// URL (plain http only on loopback, for tests)"));
    }
    let custom = TopUpBounds {
        min_credits: s.min_top_up.unwrap_or(TopUpBounds::default().min_credits),
        max_credits: s.max_top_up.unwrap_or(TopUpBounds::default().max_credits),
    };
    if custom.min_credits < 50 || custom.max_credits < custom.min_credits || custom.max_credits > 99_999_999 {
        problems.push(Problem::new(
            "stripe.min_top_up",
            "the custom top-up must allow at least 50 credits (Stripe's US$0.50 minimum) and max_top_up ≥ min_top_up (at most 99,999,999)",
        ));
    }
    let packs = s.packs.clone().unwrap_or_else(|| DEFAULT_PACKS.to_vec());
    if packs.is_empty() || packs.len() > 8 || packs.iter().any(|p| *p < 50 || *p > 99_999_999) {
        problems.push(Problem::new("stripe.packs", "1 to 8 packs, each from 50 to 99,999,999 credits"));
    }
    let bonus_percent = s.bonus_percent.unwrap_or(0);
    if bonus_percent > 100 {
        problems.push(Problem::new("stripe.bonus_percent", "must be at most 100"));
    }
    let mut plans = Vec::new();
    for (tier, price, credits) in [
        (Tier::Starter, &s.plans.starter, s.included_credits.starter),
        (Tier::Pro, &s.plans.pro, s.included_credits.pro),
        (Tier::Team, &s.plans.team, s.included_credits.team),
    ] {
        let monthly_credits = credits.unwrap_or(0);
        if monthly_credits < 0 {
            problems.push(Problem::new(&format!("stripe.included_credits.{tier}"), "must not be negative"));
        }
        match price {
            Some(p) if p.starts_with("price_") => {
                plans.push(PlanSettings { tier, price_id: p.clone(), monthly_credits: monthly_credits.max(0) })
            }
            Some(_) => {
                problems.push(Problem::new(&format!("stripe.plans.{tier}"), "must be a Stripe Price id (price_…)"))
            }
            None if credits.is_some() => problems.push(Problem::new(
                &format!("stripe.included_credits.{tier}"),
                format!("is set but stripe.plans.{tier} (its price) is not"),
            )),
            None => {}
        }
    }
    Some(PaymentSettings {
        secret_key: secret_key.clone().into_inner(),
        webhook_secrets: s.webhook_secrets.iter().map(|w| w.clone().into_inner()).collect(),
        api_base,
        packs,
        bonus_percent,
        custom,
        plans,
        auto_topup: s.auto_topup.unwrap_or(true),
        reconcile_every: Duration::from_secs(s.reconcile_every_secs.unwrap_or(900).max(10)),
        reconcile_window: Duration::from_secs(s.reconcile_window_hours.unwrap_or(72).clamp(1, 720) * 3600),
        public_url: public_url.trim_end_matches('/').to_owned(),
    })
}
