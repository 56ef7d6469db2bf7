//! The settlement writer: usage rows and ledger debits leave the hot path through a channel and
//! are written in batches, one transaction each. Invariant: a settlement handed over is written
//! (or, at shutdown with the database gone, reported lost) before shutdown completes; a failed
//! write is retried, and the retry is idempotent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_store::{AuditEvent, SettleOutcome, Settlement, Severity, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::accounts::KeyAccount;
use super::{reset_book, BillingStats};
use crate::tasks::Tasks;

const BATCH: usize = 1_000;
const GATHER: Duration = Duration::from_millis(20);
const RETRY_AFTER: Duration = Duration::from_millis(250);
const SHUTDOWN_ATTEMPTS: u32 = 8;

struct Item {
    settlement: Settlement,
    /// The book to credit back once written, and the lease it was charged on.
    account: Option<(Arc<KeyAccount>, Uuid)>,
    outcome: Outcome,
}

/// How the node ended the request's hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Settled,
    /// The hold's lease had been reaped while the node was stalled: refused in memory.
    LeaseGone,
}

/// The sending side, cheap to clone. Never blocks and never awaits.
#[derive(Clone)]
pub struct SettleSink {
    tx: mpsc::UnboundedSender<Item>,
    queued: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for SettleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettleSink").field("backlog", &self.backlog()).finish()
    }
}

impl SettleSink {
    pub(crate) fn send(&self, settlement: Settlement, account: Option<(Arc<KeyAccount>, Uuid)>, outcome: Outcome) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Item { settlement, account, outcome }).is_err() {
            tracing::error!("settlement writer has stopped; a settlement was not recorded");
        }
    }

    /// Records a request that was never billable (a test key): its usage row only.
    pub fn record_unbilled(&self, settlement: Settlement) {
        self.send(settlement, None, Outcome::Settled);
    }

    /// Settlements handed over but not yet written.
    pub fn backlog(&self) -> u64 {
        self.queued.load(Ordering::Relaxed).saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

pub(super) fn spawn(store: Arc<dyn Store>, stats: Arc<BillingStats>, tasks: &Tasks) -> SettleSink {
    let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
    let sink = SettleSink { tx, queued: Arc::new(AtomicU64::new(0)), written: Arc::new(AtomicU64::new(0)) };
    let written = sink.written.clone();
    let cancel = tasks.cancelled();
    tasks.spawn("settlement-writer", async move {
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
        loop {
            let stopping = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                () = cancel.cancelled() => true,
            };
            if !stopping && batch.len() < BATCH {
                // Let a burst gather: one transaction per batch, not per request.
                tokio::time::sleep(GATHER).await;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
            }
            let stopping = stopping || cancel.is_cancelled();
            if stopping {
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                }
            }
            for chunk in batch.chunks(BATCH) {
                write(&store, &stats, chunk, &cancel).await;
                written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            batch.clear();
            if stopping {
                return;
            }
        }
    });
    sink
}

async fn write(store: &Arc<dyn Store>, stats: &BillingStats, items: &[Item], cancel: &CancellationToken) {
    let settlements: Vec<Settlement> = items.iter().map(|i| i.settlement.clone()).collect();
    let mut attempt = 0u32;
    let results = loop {
        match store.settle(&settlements).await {
            Ok(results) => break results,
            Err(err) => {
                attempt += 1;
                if cancel.is_cancelled() && attempt >= SHUTDOWN_ATTEMPTS {
                    tracing::error!(error = %err, settlements = items.len(), "settlements lost: database unreachable at shutdown");
                    return;
                }
                tracing::error!(error = %err, settlements = items.len(), attempt, "settlement write failed; retrying");
                let backoff = RETRY_AFTER * attempt.min(20);
                // Shutdown must not wait out a long backoff.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = cancel.cancelled() => {}
                }
            }
        }
    };
    for (item, result) in items.iter().zip(&results) {
        let sent = item.settlement.usage.charged;
        if let Some((account, lease)) = &item.account {
            let mut b = account.lock();
            if b.lease_id == *lease {
                if result.outcome == SettleOutcome::Refused {
                    // The reaper ended this lease while the node was stalled: it is gone.
                    reset_book(&mut b, &account.credit);
                } else if sent.is_positive() {
                    b.book.flushed(sent);
                    account.credit.pending.fetch_sub(sent.0, Ordering::Relaxed);
                }
            }
            if let Some(after) = result.balance_after {
                account.credit.balance.store(after.0, Ordering::Relaxed);
            }
        }
        let refused = result.outcome == SettleOutcome::Refused || item.outcome == Outcome::LeaseGone;
        if refused {
            stats.refused_settlements.fetch_add(1, Ordering::Relaxed);
            audit(
                store,
                &item.settlement,
                "late_settlement_refused",
                serde_json::json!({
                    "usage_id": item.settlement.usage.id, "cost_micros": item.settlement.usage.cost.0,
                }),
            )
            .await;
            continue;
        }
        // What the request should have paid and what the ledger could take.
        let wanted = sent.saturating_add(item.settlement.overage);
        let shortfall = wanted.saturating_sub(result.charged);
        if result.outcome == SettleOutcome::Applied && shortfall.is_positive() {
            stats.shortfalls.fetch_add(1, Ordering::Relaxed);
            stats.shortfall_micros.fetch_add(shortfall.0 as u64, Ordering::Relaxed);
            audit(
                store,
                &item.settlement,
                "billing_shortfall",
                serde_json::json!({
                    "usage_id": item.settlement.usage.id, "cost_micros": item.settlement.usage.cost.0,
                    "charged_micros": result.charged.0, "shortfall_micros": shortfall.0,
                }),
            )
            .await;
        }
    }
}

async fn audit(store: &Arc<dyn Store>, s: &Settlement, event_type: &str, metadata: serde_json::Value) {
    let event = AuditEvent {
        id: Uuid::new_v4(),
        created_at: time::OffsetDateTime::now_utc(),
        user_id: Some(s.usage.user_id),
        event_type: event_type.to_owned(),
        ip_address: None,
        user_agent: None,
        metadata,
        severity: Severity::Warning,
    };
    tracing::warn!(user_id = %s.usage.user_id, event_type, "billing event");
    if let Err(err) = store.record_audit(&event).await {
        tracing::error!(error = %err, event_type, "could not write audit event");
    }
}
