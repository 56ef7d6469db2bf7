//! Whether this node can serve: the database answers. Probes come from load balancers, and from
//! anyone who can reach the port, so the answer is cached: at most one database ping a second
//! however often `/readyz` is asked.
//! Invariant: a probe never waits on another: while one ping runs, others get the last answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use layers_store::Store;
use tokio::time::Instant;

/// How long an answer is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Longest a ping may take before the database counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the last ping found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbHealth {
    Ok,
    Error,
    Timeout,
}

#[derive(Debug)]
pub struct Readiness {
    store: Arc<dyn Store>,
    last: Mutex<Option<(Instant, DbHealth)>>,
    probing: tokio::sync::Mutex<()>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>) -> Readiness {
        Readiness { store, last: Mutex::new(None), probing: tokio::sync::Mutex::new(()) }
    }

    fn cached(&self, now: Instant) -> Option<DbHealth> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.filter(|(at, _)| now.saturating_duration_since(*at) < FRESH_FOR).map(|(_, h)| h)
    }

    /// The database's health, pinged at most once per second.
    pub async fn database(&self) -> DbHealth {
        if let Some(health) = self.cached(Instant::now()) {
            return health;
        }
        let Ok(_probe) = self.probing.try_lock() else {
            // Someone is pinging now: the last answer stands (ready until shown otherwise).
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            return last.map_or(DbHealth::Ok, |(_, h)| h);
        };
        let health = match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => DbHealth::Ok,
            Ok(Err(err)) => {
                tracing::warn!(error = %crate::error::chain(&err), "readiness: database unreachable");
                DbHealth::Error
            }
            Err(_) => DbHealth::Timeout,
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), health));
        health
    }
}
