//! A latency histogram for Prometheus: fixed buckets, lock-free counts. Invariant: `count` is
//! the last cumulative bucket (`+Inf`), and `sum` is in microseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus' `le`).
pub const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Cumulative count per bucket of `BUCKETS`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed).max(running);
        Snapshot { cumulative, count, sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(200));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(120));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 0);
        assert_eq!(s.cumulative[1], 1, "200 µs ≤ 250 µs");
        assert_eq!(s.cumulative[5], 2, "3 ms ≤ 5 ms");
        assert_eq!(*s.cumulative.last().unwrap(), 2, "two minutes is past the last bucket");
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 120.0032).abs() < 1e-9);
    }
}
