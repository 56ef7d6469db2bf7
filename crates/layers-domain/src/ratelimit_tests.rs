use super::*;
use proptest::prelude::*;

const MIN: u64 = 60_000;

fn limit(n: u32) -> Limit {
    Limit { requests: n, window_ms: MIN }
}

#[test]
fn admits_a_burst_up_to_the_limit_then_refuses_until_the_oldest_ages_out() {
    let mut log = WindowLog::default();
    for i in 0..10 {
        let d = log.check(1_000 + i, limit(10));
        assert!(d.allowed);
        assert_eq!(d.remaining, 9 - i as u32);
    }
    let d = log.check(5_000, limit(10));
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ms, 1_000 + MIN - 5_000, "until the first request leaves the window");
    assert_eq!(d.reset_ms, 1_009 + MIN - 5_000);
    assert!(!log.check(1_000 + MIN - 1, limit(10)).allowed);
    assert!(log.check(1_000 + MIN, limit(10)).allowed, "exactly a window later");
}

#[test]
fn no_double_limit_at_a_fixed_window_boundary() {
    // A fixed-window limiter admits 10 at 59.9 s and 10 more at 60.1 s. This one does not.
    let mut log = WindowLog::default();
    let admitted = (0..20).filter(|i| log.check(59_900 + i * 20, limit(10)).allowed).count();
    assert_eq!(admitted, 10);
}

#[test]
fn peeking_counts_nothing() {
    let mut log = WindowLog::default();
    assert_eq!(log.peek(0, limit(3)).remaining, 3);
    log.check(0, limit(3));
    let p = log.peek(10, limit(3));
    assert!(p.allowed);
    assert_eq!((p.remaining, p.reset_ms), (2, MIN - 10));
    assert_eq!(log.peek(10, limit(3)).remaining, 2, "still two: peeking took nothing");
    assert_eq!(log.check(10, limit(3)).remaining, 1);
}

#[test]
fn zero_and_shrinking_limits() {
    let mut log = WindowLog::default();
    assert!(!log.check(0, limit(0)).allowed);
    for t in 0..5 {
        assert!(log.check(t, limit(5)).allowed);
    }
    assert!(!log.check(10, limit(3)).allowed, "a lowered limit applies at once");
}

#[test]
fn token_window() {
    let mut w = TokenWindow::default();
    w.add(0, 600);
    w.add(10_000, 500);
    assert_eq!(w.used(20_000, MIN), 1_100);
    assert_eq!(w.retry_after_ms(20_000, MIN, 1_000), MIN - 20_000);
    assert_eq!(w.used(MIN, MIN), 500);
    assert_eq!(w.used(MIN + 10_000, MIN), 0);
}

#[test]
fn reset_formats() {
    assert_eq!(format_reset(20), "20ms");
    assert_eq!(format_reset(1_500), "1.5s");
    assert_eq!(format_reset(6_000), "6s");
    assert_eq!(format_reset(360_000), "6m0s");
    assert_eq!(format_reset(61_250), "1m1.25s");
}

proptest! {
    /// Exhaustive against a brute-force check: never more than the limit in any window, and a
    /// request is refused only when the limit really is reached in its window.
    #[test]
    fn exact_in_every_window(gaps in proptest::collection::vec(0u64..4_000, 1..400), n in 1u32..25, window in 1_000u64..30_000) {
        let lim = Limit { requests: n, window_ms: window };
        let mut log = WindowLog::default();
        let mut now = 0;
        let mut admitted: Vec<u64> = Vec::new();
        for g in gaps {
            now += g;
            let in_window = admitted.iter().filter(|t| **t + window > now).count() as u32;
            let d = log.check(now, lim);
            prop_assert_eq!(d.allowed, in_window < n, "at {} with {} in window", now, in_window);
            if d.allowed {
                admitted.push(now);
                prop_assert_eq!(d.remaining, n - in_window - 1);
            } else {
                // Waiting retry_after_ms really does free a slot.
                let t = now + d.retry_after_ms;
                prop_assert!(admitted.iter().filter(|a| **a + window > t).count() < n as usize);
            }
        }
        for (i, t) in admitted.iter().enumerate() {
            let count = admitted[i..].iter().take_while(|u| **u < t + window).count();
            prop_assert!(count <= n as usize, "{} admitted in the window starting at {}", count, t);
        }
    }
}
