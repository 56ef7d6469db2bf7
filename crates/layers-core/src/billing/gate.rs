//! The database as the request path sees it: every call has a deadline, and once a call has
//! failed, requests stop waiting on the database until a call succeeds again (the request
//! path retries at most every `RETRY_AFTER`, background work every time it runs). Invariant: no
//! request waits on a database known to be down; requests covered by a live lease never wait
//! on it at all.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use layers_store::StoreError;
use tokio::time::Instant;

/// How long requests skip the database after a failure before one of them tries again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why billing could not reach the database.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the database is unreachable (a recent call failed)")]
    Down,
    #[error("settlements are waiting to be written; admission slowed")]
    Backlog,
    #[error("the database refused the call")]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub(crate) struct DbGate {
    timeout: Duration,
    up: AtomicBool,
    /// Milliseconds since `epoch` of the last failure.
    failed_at: AtomicU64,
    epoch: Instant,
    pub failures: AtomicU64,
}

impl DbGate {
    pub fn new(timeout: Duration) -> DbGate {
        DbGate {
            timeout,
            up: AtomicBool::new(true),
            failed_at: AtomicU64::new(0),
            epoch: Instant::now(),
            failures: AtomicU64::new(0),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A call on the request path: refused at once while the database is known down (but for
    /// one try every `RETRY_AFTER`), bounded by the timeout otherwise.
    pub async fn call<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, Unavailable> {
        if !self.is_up() {
            let since = self.now_ms().saturating_sub(self.failed_at.load(Ordering::Relaxed));
            if since < RETRY_AFTER.as_millis() as u64 {
                return Err(Unavailable::Down);
            }
            // This request is the probe; the others keep being refused meanwhile.
            self.failed_at.store(self.now_ms(), Ordering::Relaxed);
        }
        self.run(fut).await
    }

    /// A call from background work (renewal, settlement, upkeep): always tried, bounded by the
    /// timeout; its outcome updates whether the database is up.
    pub async fn run<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, Unavailable> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Unavailable::Store(e)),
            Err(_) => Err(Unavailable::Timeout(self.timeout)),
        };
        match &result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("billing: the database answers again");
                }
            }
            // A constraint or a missing row is the call's own problem, not the database's.
            Err(Unavailable::Store(e)) if !e.is_connection() => {}
            Err(err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.failed_at.store(self.now_ms(), Ordering::Relaxed);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %crate::error::chain(err), "billing: the database is unreachable; serving from leases");
                }
            }
        }
        result
    }
}
