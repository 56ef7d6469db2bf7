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

/// When a route is taken out of rotation: at least `failures` failures within a window of
/// `WINDOW_MS`, and at least as many failures as successes in it. A route that fails one call
/// in ten stays in (taking it out would fail every call of a one-route model); a route that is
/// down goes out after `failures` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures within the window that open the breaker (when they are at least half).
    pub failures: u32,
    /// How long an open breaker keeps the route out.
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { failures: 5, cooldown_ms: 30_000 }
    }
}

/// The window over which a closed breaker counts outcomes.
pub const WINDOW_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// In rotation; outcomes of the window that began at `since_ms` and of the one before it
    /// (weighted by how much of it still overlaps the last `WINDOW_MS`, so counts slide
    /// instead of resetting at a boundary).
    Closed { since_ms: u64, failures: u32, successes: u32, before: (u32, u32) },
    /// Out of rotation until `until_ms`.
    Open { until_ms: u64 },
    /// The cool-down passed and one probe went through at `probe_ms`; its outcome closes or
    /// re-opens the breaker. Other calls wait (skip the route) meanwhile.
    HalfOpen { probe_ms: u64 },
}

/// The circuit breaker of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    pub state: BreakerState,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: BreakerState::Closed { since_ms: 0, failures: 0, successes: 0, before: (0, 0) } }
    }
}

/// What [`Breaker::admit`] decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The route is out of rotation.
    No,
    /// In rotation.
    Yes,
    /// This call is the probe taken at `probe_ms`: its outcome closes or re-opens the route;
    /// if it ends for its own reasons it is given back ([`Breaker::release_probe`]).
    Probe { probe_ms: u64 },
}

impl Breaker {
    /// Whether a call may use the route now, and whether it is the probe.
    pub fn admit(&mut self, policy: &BreakerPolicy, now_ms: u64) -> Pass {
        match self.state {
            BreakerState::Closed { .. } => Pass::Yes,
            BreakerState::Open { until_ms } if now_ms < until_ms => Pass::No,
            BreakerState::HalfOpen { probe_ms } if now_ms < probe_ms.saturating_add(policy.cooldown_ms) => Pass::No,
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::HalfOpen { probe_ms: now_ms };
                Pass::Probe { probe_ms: now_ms }
            }
        }
    }

    /// Whether a call may use the route now.
    pub fn allows(&mut self, policy: &BreakerPolicy, now_ms: u64) -> bool {
        self.admit(policy, now_ms) != Pass::No
    }

    /// The probe ended for reasons of its own request (the client left, the request was
    /// refused as the client's fault): it says nothing of the route, so the next call probes.
    pub fn release_probe(&mut self, probe_ms: u64) {
        if self.state == (BreakerState::HalfOpen { probe_ms }) {
            self.state = BreakerState::Open { until_ms: 0 };
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

    pub fn success(&mut self, now_ms: u64) {
        let (since_ms, failures, successes, before) = self.window(now_ms);
        self.state = BreakerState::Closed { since_ms, failures, successes: successes.saturating_add(1), before };
    }

    /// The closed breaker's window at `now_ms` (rolled forward if it ended); a fresh one when
    /// the breaker was not closed.
    fn window(&self, now_ms: u64) -> (u64, u32, u32, (u32, u32)) {
        match self.state {
            BreakerState::Closed { since_ms, failures, successes, before } => {
                if now_ms < since_ms.saturating_add(WINDOW_MS) {
                    (since_ms, failures, successes, before)
                } else if now_ms < since_ms.saturating_add(2 * WINDOW_MS) {
                    (since_ms + WINDOW_MS, 0, 0, (failures, successes))
                } else {
                    (now_ms, 0, 0, (0, 0))
                }
            }
            _ => (now_ms, 0, 0, (0, 0)),
        }
    }

    /// Records a failure of a call, `probe` when it was the probe; returns true when this
    /// failure opened the breaker. While half-open only the probe's own failure counts: a call
    /// that began before the route went out says nothing of it now.
    pub fn failure(&mut self, policy: &BreakerPolicy, now_ms: u64, probe: Option<u64>) -> bool {
        let open = BreakerState::Open { until_ms: now_ms.saturating_add(policy.cooldown_ms) };
        match self.state {
            BreakerState::Closed { .. } => {
                let (since_ms, failures, successes, before) = self.window(now_ms);
                let failures = failures.saturating_add(1);
                // The previous window counts for the part of it still within the last window.
                let overlap = WINDOW_MS.saturating_sub(now_ms.saturating_sub(since_ms)) as f64 / WINDOW_MS as f64;
                let f = f64::from(failures) + f64::from(before.0) * overlap;
                let s = f64::from(successes) + f64::from(before.1) * overlap;
                if f >= f64::from(policy.failures.max(1)) && f >= s {
                    self.state = open;
                    true
                } else {
                    self.state = BreakerState::Closed { since_ms, failures, successes, before };
                    false
                }
            }
            BreakerState::HalfOpen { probe_ms } if probe == Some(probe_ms) => {
                self.state = open;
                true
            }
            BreakerState::HalfOpen { .. } => false,
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
    fn breaker_opens_when_failures_dominate_and_probes_after_the_cooldown() {
        let policy = BreakerPolicy { failures: 3, cooldown_ms: 1000 };
        let mut b = Breaker::default();
        assert!(!b.failure(&policy, 0, None));
        b.success(0);
        assert!(!b.failure(&policy, 1, None));
        assert!(b.failure(&policy, 3, None), "three failures, one success, in one window: out");
        assert!(!b.allows(&policy, 500));
        assert_eq!(b.wait_ms(&policy, 500), 503);
        assert!(b.allows(&policy, 1003), "cool-down over: a probe goes through");
        assert!(!b.allows(&policy, 1004), "one probe at a time");
        assert!(b.failure(&policy, 1004, Some(1003)), "a failed probe re-opens at once");
        assert!(!b.allows(&policy, 1500));
        assert!(b.allows(&policy, 2004));
        assert!(b.allows(&policy, 3004), "a probe that never reported is replaced after a cool-down");
        b.success(3005);
        assert!(!b.is_open());
    }

    #[test]
    fn a_probe_that_ends_for_its_own_reasons_neither_closes_nor_reopens() {
        let policy = BreakerPolicy { failures: 1, cooldown_ms: 1000 };
        let mut b = Breaker::default();
        assert!(b.failure(&policy, 0, None));
        assert_eq!(b.admit(&policy, 1000), Pass::Probe { probe_ms: 1000 });
        // A call that began before the route went out fails now: not the probe, no effect.
        assert!(!b.failure(&policy, 1001, None));
        assert_eq!(b.admit(&policy, 1002), Pass::No, "the probe is still out");
        // The probe's client left: the next call probes at once instead of a cool-down later.
        b.release_probe(1000);
        assert!(b.is_open());
        assert_eq!(b.admit(&policy, 1003), Pass::Probe { probe_ms: 1003 });
        b.success(1004);
        assert_eq!(b.admit(&policy, 1005), Pass::Yes);
        // Giving back a probe that is not the current one changes nothing.
        b.release_probe(1003);
        assert_eq!(b.admit(&policy, 1006), Pass::Yes);
    }

    #[test]
    fn a_route_that_mostly_works_stays_in_rotation() {
        let policy = BreakerPolicy { failures: 5, cooldown_ms: 1000 };
        let mut b = Breaker::default();
        // One failure in five, in bursts of two, for a minute: never out.
        for t in 0..600u64 {
            if t % 10 < 2 {
                assert!(!b.failure(&policy, t * 100, None), "opened at {t}");
            } else {
                b.success(t * 100);
            }
        }
        // A burst of failures right after a window boundary still sees the successes before it.
        let mut edge = Breaker::default();
        for t in 0..100u64 {
            edge.success(t * 99);
        }
        for t in 0..6u64 {
            assert!(!edge.failure(&policy, WINDOW_MS + t, None), "opened at the boundary");
        }
        // Failures far apart (a window each) never add up either.
        let mut quiet = Breaker::default();
        for t in 0..20u64 {
            assert!(!quiet.failure(&policy, t * WINDOW_MS, None));
        }
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
                b.failure(&policy, at + u64::from(i), None);
            }
            prop_assert!(b.is_open());
            prop_assert!(b.allows(&policy, at + u64::from(fails) + cooldown));
        }
    }
}
