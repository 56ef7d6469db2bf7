//! Batches usage rows off the hot path. Requests hand rows over without waiting; a background
//! task writes them in one statement per batch. Invariant: a row handed over is written before
//! shutdown completes, and a failed write is retried, not dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_store::{Store, UsageRecord};
use tokio::sync::mpsc;

use crate::tasks::Tasks;

const BATCH: usize = 1_000;
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const RETRY_AFTER: Duration = Duration::from_millis(500);
const SHUTDOWN_ATTEMPTS: u32 = 8;

/// The sending side, cheap to clone. Never blocks and never awaits.
#[derive(Clone, Debug)]
pub struct UsageSink {
    tx: mpsc::UnboundedSender<UsageRecord>,
    stats: Arc<UsageStats>,
}

#[derive(Debug, Default)]
pub struct UsageStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub write_failures: AtomicU64,
}

impl UsageSink {
    pub fn record(&self, row: UsageRecord) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(row).is_err() {
            tracing::error!("usage writer has stopped; a usage row was not recorded");
        }
    }

    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }

    /// Rows handed over but not yet written.
    pub fn backlog(&self) -> u64 {
        self.stats.queued.load(Ordering::Relaxed).saturating_sub(self.stats.written.load(Ordering::Relaxed))
    }
}

/// Starts the writer; it drains everything queued when tasks shut down.
pub fn spawn_writer(store: Arc<dyn Store>, tasks: &Tasks) -> UsageSink {
    let (tx, mut rx) = mpsc::unbounded_channel::<UsageRecord>();
    let stats = Arc::new(UsageStats::default());
    let sink = UsageSink { tx, stats: stats.clone() };
    let cancel = tasks.cancelled();
    tasks.spawn("usage-writer", async move {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stopping = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                _ = cancel.cancelled() => true,
            };
            if !stopping && batch.len() < BATCH {
                // Let a burst accumulate briefly: one write per batch, not per request.
                tokio::time::sleep(FLUSH_EVERY).await;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(row) => batch.push(row),
                        Err(_) => break,
                    }
                }
            }
            if stopping {
                while let Ok(row) = rx.try_recv() {
                    batch.push(row);
                }
            }
            write(&store, &stats, &mut batch, stopping).await;
            if stopping {
                return;
            }
        }
    });
    sink
}

/// Writes a batch, retrying with backoff. While shutting down it gives up after a bounded
/// number of attempts (an unreachable database must not hold the process forever) and says so.
async fn write(store: &Arc<dyn Store>, stats: &UsageStats, batch: &mut Vec<UsageRecord>, stopping: bool) {
    for chunk in batch.chunks(BATCH) {
        let mut attempt = 0u32;
        loop {
            match store.record_usage(chunk).await {
                Ok(_) => {
                    stats.written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(err) => {
                    attempt += 1;
                    stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    if stopping && attempt >= SHUTDOWN_ATTEMPTS {
                        tracing::error!(error = %err, rows = chunk.len(), "usage rows lost: database unreachable at shutdown");
                        break;
                    }
                    tracing::error!(error = %err, rows = chunk.len(), attempt, "usage write failed; retrying");
                    tokio::time::sleep(RETRY_AFTER * attempt.min(20)).await;
                }
            }
        }
    }
    batch.clear();
}
