//! `[anomaly]`: the thresholds of the anomaly rules (SPEC §8.4) and the operator's webhook.

use layers_core::alerts::{AnomalySettings, OperatorHook, WebhookPolicy};
use layers_domain::anomaly::Thresholds;
use layers_domain::MicroCredits;
use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::{Config, Problem};

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Keys created in one hour that flag the account (default 5; 0 turns the rule off).
    pub keys_per_hour: Option<u32>,
    /// An hour's usage this many times the account's normal hourly usage is a spike (default 10; 0 off).
    pub spike_factor: Option<u32>,
    /// …and at least this many credits (default 1).
    pub spike_min_credits: Option<u64>,
    /// Requests per minute per key while a spike holds the account back (default 10)…
    pub spike_requests_per_minute: Option<u32>,
    /// …for this many minutes (default 60).
    pub spike_hold_minutes: Option<u32>,
    /// High-cost models watched: names, or patterns with `*` (default Opus, o1, o3).
    pub expensive_models: Option<Vec<String>>,
    /// Credits a day on them that alert the user and the operator (default 10,000 = US$100; 0 off).
    pub expensive_credits_per_day: Option<u64>,
    /// Where anomalies are POSTed for the operator, signed like alert webhooks.
    pub operator_webhook_url: Option<String>,
    /// The signing secret of that webhook (required with it, at least 24 characters).
    pub operator_webhook_secret: Option<Secret>,
}

pub(super) fn check_anomaly(c: &Config, webhooks: WebhookPolicy, problems: &mut Vec<Problem>) -> AnomalySettings {
    let a = &c.anomaly;
    let d = Thresholds::default();
    let credits = |path: &str, v: Option<u64>, default: MicroCredits, problems: &mut Vec<Problem>| match v {
        None => default,
        Some(n) => match i64::try_from(n).ok().and_then(|n| n.checked_mul(1_000_000)) {
            Some(m) => MicroCredits(m),
            None => {
                problems.push(Problem::new(path, "is too large"));
                default
            }
        },
    };
    let thresholds = Thresholds {
        keys_per_hour: a.keys_per_hour.unwrap_or(d.keys_per_hour),
        spike_factor: a.spike_factor.unwrap_or(d.spike_factor),
        spike_min: credits("anomaly.spike_min_credits", a.spike_min_credits, d.spike_min, problems),
        spike_requests_per_minute: a.spike_requests_per_minute.unwrap_or(d.spike_requests_per_minute).max(1),
        spike_hold_minutes: a.spike_hold_minutes.unwrap_or(d.spike_hold_minutes).clamp(1, 24 * 60),
        expensive_models: a.expensive_models.clone().unwrap_or(d.expensive_models),
        expensive_per_day: credits(
            "anomaly.expensive_credits_per_day",
            a.expensive_credits_per_day,
            d.expensive_per_day,
            problems,
        ),
    };
    let operator = match (&a.operator_webhook_url, &a.operator_webhook_secret) {
        (None, None) => None,
        (Some(url), Some(secret)) => {
            if let Err(why) = webhooks.check_url(url) {
                problems.push(Problem::new("anomaly.operator_webhook_url", why));
            }
            if secret.expose().len() < 24 {
                problems.push(Problem::new("anomaly.operator_webhook_secret", "must be at least 24 characters"));
            }
            Some(OperatorHook { url: url.clone(), secret: secret.clone().into_inner() })
        }
        (Some(_), None) => {
            problems.push(Problem::new(
                "anomaly.operator_webhook_secret",
                "is required with anomaly.operator_webhook_url: the operator verifies each POST with it",
            ));
            None
        }
        (None, Some(_)) => {
            problems
                .push(Problem::new("anomaly.operator_webhook_url", "is required with anomaly.operator_webhook_secret"));
            None
        }
    };
    AnomalySettings { thresholds, operator }
}
