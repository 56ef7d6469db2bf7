//! The time the services read, so tests can move it instead of sleeping: rate-limit windows,
//! IP blocks, breaker cool-downs and test keys' days all ask this clock.
//! Invariant: in production it is the system's clock; `advance` only ever moves it forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far this clock runs ahead of the system's (tests only).
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Unix time in milliseconds.
    pub fn unix_ms(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX).saturating_add(self.ahead())
    }

    /// The current time, as the services read it (the system's, should the clock be moved past
    /// what a date can hold).
    pub fn now(&self) -> time::OffsetDateTime {
        let ns = i128::from(self.unix_ms()) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or_else(|_| time::OffsetDateTime::now_utc())
    }

    /// Milliseconds since `epoch` (a monotonic start point a component keeps).
    pub fn ms_since(&self, epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(self.ahead())
    }

    /// Moves this clock (and every service reading it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.ahead_ms.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    fn ahead(&self) -> u64 {
        self.ahead_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_reading_forward() {
        let clock = Clock::system();
        let epoch = Instant::now();
        let (unix, since) = (clock.unix_ms(), clock.ms_since(epoch));
        clock.clone().advance(Duration::from_secs(60));
        assert!(clock.unix_ms() >= unix + 60_000);
        assert!(clock.ms_since(epoch) >= since + 60_000);
    }
}
