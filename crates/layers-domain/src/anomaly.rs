//! The anomaly rules of the security guide (SPEC §8.4), as pure decisions: rapid key
//! creation, a usage spike against the account's normal hourly usage, and spend on high-cost
//! models per day. (Failed authentications per address are the IP guard's; repeated refunds
//! are the payments'.) Each rule fires at its threshold, not one below.

use crate::MicroCredits;

/// The thresholds, each configurable (`[anomaly]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Keys created in one hour that flag the account.
    pub keys_per_hour: u32,
    /// A spike is an hour's usage at least this many times the account's normal hourly usage…
    pub spike_factor: u32,
    /// …and at least this much (a few cents against a near-zero baseline is no spike).
    pub spike_min: MicroCredits,
    /// Requests per minute per key while a spike holds the account back…
    pub spike_requests_per_minute: u32,
    /// …for this many minutes.
    pub spike_hold_minutes: u32,
    /// Models whose spend is watched: exact names, or prefixes ending in `*`.
    pub expensive_models: Vec<String>,
    /// Spend on them per UTC day that alerts the user and the operator.
    pub expensive_per_day: MicroCredits,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            keys_per_hour: 5,
            spike_factor: 10,
            spike_min: MicroCredits(1_000_000),
            spike_requests_per_minute: 10,
            spike_hold_minutes: 60,
            expensive_models: ["*opus*", "openai/o1*", "openai/o3*", "*/o1-pro*"].map(String::from).to_vec(),
            // US$100.
            expensive_per_day: MicroCredits(10_000_000_000),
        }
    }
}

/// Whether `created_last_hour` keys flag the account.
pub fn rapid_key_creation(created_last_hour: u32, t: &Thresholds) -> bool {
    t.keys_per_hour > 0 && created_last_hour >= t.keys_per_hour
}

/// The hours the baseline is taken over: the week before the last hour.
pub const BASELINE_HOURS: i64 = 7 * 24;

/// Whether the last hour's usage is a spike: at least `spike_factor` × the baseline's hourly
/// average and at least `spike_min`. An account with no history has no normal to compare with.
pub fn spike(last_hour: MicroCredits, baseline_total: MicroCredits, t: &Thresholds) -> bool {
    if baseline_total.0 <= 0 || t.spike_factor == 0 {
        return false;
    }
    // last_hour ≥ factor × baseline_total / BASELINE_HOURS, in integers.
    let lhs = i128::from(last_hour.0) * i128::from(BASELINE_HOURS);
    let rhs = i128::from(baseline_total.0) * i128::from(t.spike_factor);
    last_hour >= t.spike_min && lhs >= rhs
}

/// Whether `model` is one of the watched high-cost models.
pub fn is_expensive(model: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| glob(p, model))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the day's spend on high-cost models alerts.
pub fn expensive_day(spent_today: MicroCredits, t: &Thresholds) -> bool {
    t.expensive_per_day.0 > 0 && spent_today >= t.expensive_per_day
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_fires_at_its_threshold_not_one_below() {
        let t = Thresholds::default();
        assert!(!rapid_key_creation(4, &t));
        assert!(rapid_key_creation(5, &t));
        // A week of 168 credits is 1 credit an hour: 10 credits in an hour is a spike, 9.99 not.
        let week = MicroCredits(168_000_000);
        assert!(spike(MicroCredits(10_000_000), week, &t));
        assert!(!spike(MicroCredits(9_999_999), week, &t));
        // Against a tiny baseline, the floor holds.
        assert!(!spike(MicroCredits(999_999), MicroCredits(1), &t));
        assert!(spike(MicroCredits(1_000_000), MicroCredits(1), &t));
        assert!(!spike(MicroCredits(50_000_000), MicroCredits::ZERO, &t), "no history, no normal");
        assert!(expensive_day(MicroCredits(10_000_000_000), &t));
        assert!(!expensive_day(MicroCredits(9_999_999_999), &t));
    }

    #[test]
    fn expensive_models_by_pattern() {
        let p = Thresholds::default().expensive_models;
        for m in ["anthropic/claude-opus-4-1", "openai/o1", "openai/o1-mini", "openai/o3-pro", "bedrock/claude-opus-4"]
        {
            assert!(is_expensive(m, &p), "{m}");
        }
        for m in ["anthropic/claude-sonnet-4-5", "openai/gpt-4o", "openai/gpt-o1x", ""] {
            assert!(!is_expensive(m, &p), "{m}");
        }
        assert!(is_expensive("exact/name", &["exact/name".into()]));
        assert!(!is_expensive("exact/name2", &["exact/name".into()]));
        assert!(is_expensive("a-b", &["a*b".into()]));
        assert!(!is_expensive("ab-a", &["a*b".into()]));
    }
}
