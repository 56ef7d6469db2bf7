//! Retry and fall-over rules for upstream routes (SPEC §2.2): jittered exponential backoff that
//! honours an upstream's `retry-after`, and a circuit breaker per route. Invariant: no clock is
//! read here — times are milliseconds the caller passes in — and a breaker never stays open past
//! its cool-down: the next call after it is let through as the one probe (another probe goes
//! only if that one has not reported within a cool-down, e.g. because its client left).

use std::time::Duration;

/// How hard one request tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on one route before falling over to the next (1 = no retry).
    pub attempts_per_route: u32,
    /// First backoff; doubles with each retry.
    pub backoff_base: Duration,
    /// Longest backoff, and the longest `retry-after` waited for before falling over instead.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_per_route: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) on the same route, with `jitter` in
    /// [0, 1) drawn by the caller ("full jitter": uniformly up to the exponential bound). An
    /// upstream's `retry-after` is honoured when it is at most `backoff_max`; a longer one
    /// means `None`: do not retry this route, fall over.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if let Some(ra) = retry_after {
            return (ra <= self.backoff_max).then_some(ra);
        }
        let exp = self.backoff_base.saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX));
        let bound = exp.min(self.backoff_max);
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        Some(bound.mul_f64(jitter))
    }
}

/// When a route is taken out of rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker keeps the route out.
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { failures: 5, cooldown_ms: 30_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    /// Out of rotation until `until_ms`.
    Open {
        until_ms: u64,
    },
    /// The cool-down passed and one probe went through at `probe_ms`; its outcome closes or
    /// re-opens the breaker. Other calls wait (skip the route) meanwhile.
    HalfOpen {
        probe_ms: u64,
    },
}

/// The circuit breaker of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    pub state: BreakerState,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: BreakerState::Closed { consecutive_failures: 0 } }
    }
}

impl Breaker {
    /// Whether a call may use the route now.
    pub fn allows(&mut self, policy: &BreakerPolicy, now_ms: u64) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until_ms } if now_ms < until_ms => false,
            BreakerState::HalfOpen { probe_ms } if now_ms < probe_ms.saturating_add(policy.cooldown_ms) => false,
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::HalfOpen { probe_ms: now_ms };
                true
            }
        }
    }

    /// Milliseconds until the route may be tried again (0 when it may be now).
    pub fn wait_ms(&self, policy: &BreakerPolicy, now_ms: u64) -> u64 {
        match self.state {
            BreakerState::Open { until_ms } => until_ms.saturating_sub(now_ms),
            BreakerState::HalfOpen { probe_ms } => probe_ms.saturating_add(policy.cooldown_ms).saturating_sub(now_ms),
            BreakerState::Closed { .. } => 0,
        }
    }

    pub fn success(&mut self) {
        self.state = BreakerState::Closed { consecutive_failures: 0 };
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn failure(&mut self, policy: &BreakerPolicy, now_ms: u64) -> bool {
        let open = BreakerState::Open { until_ms: now_ms.saturating_add(policy.cooldown_ms) };
        match self.state {
            BreakerState::Closed { consecutive_failures } => {
                let n = consecutive_failures.saturating_add(1);
                if n >= policy.failures.max(1) {
                    self.state = open;
                    true
                } else {
                    self.state = BreakerState::Closed { consecutive_failures: n };
                    false
                }
            }
            BreakerState::HalfOpen { .. } => {
                self.state = open;
                true
            }
            // A call that started before the breaker opened: it stays open as it is.
            BreakerState::Open { .. } => false,
        }
    }

    /// Out of rotation: open, or half-open with its probe in flight.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, BreakerState::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let p = RetryPolicy {
            attempts_per_route: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
        };
        assert_eq!(p.backoff(0, None, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(p.backoff(2, None, 0.5), Some(Duration::from_millis(200)));
        assert_eq!(p.backoff(10, None, 0.999), Some(Duration::from_micros(999_000)));
        assert_eq!(p.backoff(0, Some(Duration::from_millis(700)), 0.1), Some(Duration::from_millis(700)));
        assert_eq!(p.backoff(0, Some(Duration::from_secs(5)), 0.1), None, "too long: fall over instead");
        assert_eq!(p.backoff(0, None, f64::NAN), Some(Duration::ZERO));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let policy = BreakerPolicy { failures: 3, cooldown_ms: 1000 };
        let mut b = Breaker::default();
        assert!(!b.failure(&policy, 0));
        b.success();
        assert!(!b.failure(&policy, 1));
        assert!(!b.failure(&policy, 2));
        assert!(b.failure(&policy, 3), "the third consecutive failure opens it");
        assert!(!b.allows(&policy, 500));
        assert_eq!(b.wait_ms(&policy, 500), 503);
        assert!(b.allows(&policy, 1003), "cool-down over: a probe goes through");
        assert!(!b.allows(&policy, 1004), "one probe at a time");
        assert!(b.failure(&policy, 1004), "a failed probe re-opens at once");
        assert!(!b.allows(&policy, 1500));
        assert!(b.allows(&policy, 2004));
        assert!(b.allows(&policy, 3004), "a probe that never reported is replaced after a cool-down");
        b.success();
        assert_eq!(b.state, BreakerState::Closed { consecutive_failures: 0 });
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(retry in 0u32..100, jitter in 0.0f64..1.0, base in 1u64..10_000, cap in 1u64..60_000) {
            let p = RetryPolicy { attempts_per_route: 2, backoff_base: Duration::from_millis(base), backoff_max: Duration::from_millis(cap) };
            let d = p.backoff(retry, None, jitter).unwrap();
            prop_assert!(d <= Duration::from_millis(cap));
        }

        #[test]
        fn an_open_breaker_always_reopens_to_probes(fails in 1u32..20, at in 0u64..1_000_000, cooldown in 1u64..100_000) {
            let policy = BreakerPolicy { failures: fails, cooldown_ms: cooldown };
            let mut b = Breaker::default();
            for i in 0..fails {
                b.failure(&policy, at + u64::from(i));
            }
            prop_assert!(b.is_open());
            prop_assert!(b.allows(&policy, at + u64::from(fails) + cooldown));
        }
    }
}
