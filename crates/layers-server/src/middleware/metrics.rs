//! Request counters kept by the request-context middleware, read by `/metrics`.
//! Invariant: counting is a relaxed atomic add, nothing more, on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const STATUSES: usize = 600;

/// Requests by HTTP status code.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    by_status: Arc<Vec<AtomicU64>>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics { by_status: Arc::new((0..STATUSES).map(|_| AtomicU64::new(0)).collect()) }
    }
}

impl RequestMetrics {
    pub fn record(&self, status: u16) {
        if let Some(c) = self.by_status.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Non-zero counters, by status.
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(s, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((s as u16, n))
            })
            .collect()
    }
}
