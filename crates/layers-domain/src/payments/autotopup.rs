//! Auto top-up: "when my balance falls below X, buy Y". One purchase per trigger: a trigger is
//! the balance being low since the last credit the account received, at a given count of
//! failed attempts; so concurrent low-balance moments on any number of nodes name the same
//! trigger (one purchase), a success re-arms it with the next credit, and a failure moves to
//! the next attempt. After `MAX_FAILURES` consecutive failures it turns itself off.

use crate::MicroCredits;

/// Consecutive failures after which auto top-up turns off.
pub const MAX_FAILURES: i32 = 3;
/// Purchases an account's auto top-up makes in 24 hours at most (a runaway spend, or a rule
/// whose amount does not lift the balance over its threshold, stops there).
pub const MAX_PER_DAY: i64 = 5;
/// A purchase whose outcome is unknown (Stripe did not answer) is tried again, under the same
/// idempotency key, after this many seconds.
pub const RETRY_UNANSWERED_AFTER_SECS: i64 = 120;

/// The account's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub enabled: bool,
    /// Buy when the balance is below this.
    pub threshold: MicroCredits,
    /// How many credits (= cents) to buy.
    pub amount_credits: i64,
    pub failures: i32,
}

/// The trigger to claim, if the rule fires at `balance`; `last_credit_ms` is when the account
/// last received credit (any credit re-arms the rule).
pub fn trigger(rule: &Rule, balance: MicroCredits, last_credit_ms: Option<i64>) -> Option<String> {
    if !rule.enabled || rule.failures >= MAX_FAILURES || balance >= rule.threshold || rule.amount_credits <= 0 {
        return None;
    }
    Some(format!("{}:{}", last_credit_ms.unwrap_or(0), rule.failures))
}

/// After a failed attempt: the new failure count and whether the rule turns off.
pub fn after_failure(failures: i32) -> (i32, bool) {
    let n = failures.saturating_add(1);
    (n, n >= MAX_FAILURES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(failures: i32) -> Rule {
        Rule { enabled: true, threshold: MicroCredits(5_000_000), amount_credits: 2_000, failures }
    }

    #[test]
    fn fires_below_the_threshold_once_per_credit_and_attempt() {
        assert_eq!(trigger(&rule(0), MicroCredits(5_000_000), Some(7)), None);
        let t = trigger(&rule(0), MicroCredits(4_999_999), Some(7)).unwrap();
        assert_eq!(trigger(&rule(0), MicroCredits(1), Some(7)).unwrap(), t);
        assert_ne!(trigger(&rule(1), MicroCredits(1), Some(7)).unwrap(), t);
        assert_ne!(trigger(&rule(0), MicroCredits(1), Some(8)).unwrap(), t);
        assert_eq!(trigger(&rule(3), MicroCredits(1), Some(8)), None);
        assert_eq!(trigger(&Rule { enabled: false, ..rule(0) }, MicroCredits(1), Some(8)), None);
    }

    #[test]
    fn three_failures_turn_it_off() {
        assert_eq!(after_failure(0), (1, false));
        assert_eq!(after_failure(1), (2, false));
        assert_eq!(after_failure(2), (3, true));
    }
}
