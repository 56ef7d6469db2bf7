//! Last-used times of keys, noted on the hot path and written in batches.
//! Invariant: the hot path touches a lock at most once per key per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layers_domain::KeyId;
use layers_store::Store;
use quick_cache::sync::Cache;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::tasks::Tasks;

/// How often a key's last-used time is written at most.
const RESOLUTION: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct LastUsed {
    noted: Cache<KeyId, Instant>,
    pending: Mutex<HashMap<KeyId, OffsetDateTime>>,
}

impl LastUsed {
    pub fn new() -> LastUsed {
        LastUsed { noted: Cache::new(100_000), pending: Mutex::new(HashMap::new()) }
    }

    pub fn note(&self, key: KeyId, now: Instant) {
        if self.noted.get(&key).is_some_and(|at| now.saturating_duration_since(at) < RESOLUTION) {
            return;
        }
        self.noted.insert(key, now);
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(key, OffsetDateTime::now_utc());
        }
    }

    fn take(&self) -> Vec<(KeyId, OffsetDateTime)> {
        match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes pending times every `every`, and once more at shutdown.
    pub fn spawn_flusher(self: &Arc<Self>, store: Arc<dyn Store>, tasks: &Tasks, every: Duration) {
        let this = self.clone();
        let cancel = tasks.cancelled();
        tasks.spawn("last-used-flusher", async move {
            loop {
                let stop = tokio::select! {
                    _ = cancel.cancelled() => true,
                    _ = tokio::time::sleep(every) => false,
                };
                let batch = this.take();
                if let Err(err) = store.touch_keys(&batch).await {
                    tracing::warn!(error = %crate::error::chain(&err), keys = batch.len(), "could not record key last-used times");
                }
                if stop {
                    return;
                }
            }
        });
    }
}

impl Default for LastUsed {
    fn default() -> Self {
        Self::new()
    }
}
