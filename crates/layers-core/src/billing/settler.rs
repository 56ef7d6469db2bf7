//! The settlement writer: usage rows and ledger debits leave the hot path through a channel and
//! are written in batches, one transaction each. Invariant: a settlement handed over is written,
//! or (when the database stays away through a shutdown's deadline) journaled to disk and written
//! at the next start — never dropped; a failed write is retried, and the retry is idempotent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_store::{AuditEvent, SettleOutcome, Settlement, Severity, Store};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::books::KeyAccount;
use super::refill::reset_book;
use super::{journal, BillingSettings, BillingStats};
use crate::tasks::Tasks;

const BATCH: usize = 2_000;
const GATHER: Duration = Duration::from_millis(50);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Longest one batch's write may take before it counts as failed (and is retried: settlement is
/// idempotent). A connection the network black-holes must not hold the writer for the kernel's
/// TCP timeout.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

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
    batch_done: Arc<Notify>,
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
            // Only after shutdown, when every request has ended: a bug if it ever happens.
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

    /// Resolves when the writer finished its next batch (`enable` it before checking the
    /// backlog, so that a batch finishing in between is not missed).
    pub(crate) fn written_notice(&self) -> tokio::sync::futures::Notified<'_> {
        self.batch_done.notified()
    }
}

pub(super) fn spawn(
    store: Arc<dyn Store>,
    stats: Arc<BillingStats>,
    settings: &BillingSettings,
    tasks: &Tasks,
) -> SettleSink {
    let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
    let sink = SettleSink {
        tx,
        queued: Arc::new(AtomicU64::new(0)),
        written: Arc::new(AtomicU64::new(0)),
        batch_done: Arc::new(Notify::new()),
    };
    let (written, batch_done) = (sink.written.clone(), sink.batch_done.clone());
    let cancel = tasks.cancelled();
    let (journal_path, shutdown_deadline) = (settings.journal.clone(), settings.shutdown_deadline);
    let audits = tasks.clone();
    tasks.spawn("settlement-writer", async move {
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
        let mut deadline: Option<Instant> = None;
        loop {
            let stopping = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                () = cancel.cancelled() => true,
            };
            if !stopping && batch.len() < BATCH / 4 {
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
                deadline.get_or_insert_with(|| Instant::now() + shutdown_deadline);
            }
            let mut rest = batch.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rest.len().min(BATCH));
                let stop = Stop { cancel: &cancel, deadline: &mut deadline, grace: shutdown_deadline };
                let journaled = !write(&store, &stats, chunk, stop, journal_path.as_deref(), &audits).await;
                if journaled {
                    // Past the shutdown deadline: the rest goes to the journal too.
                    journal_rest(tail, journal_path.as_deref(), &stats).await;
                }
                let done = if journaled { rest.len() } else { chunk.len() };
                written.fetch_add(done as u64, Ordering::Relaxed);
                batch_done.notify_waiters();
                rest = if journaled { &[] } else { tail };
            }
            batch.clear();
            if stopping {
                return;
            }
        }
    });
    sink
}

/// When a shutdown began, and how long it gives the writer.
struct Stop<'a> {
    cancel: &'a CancellationToken,
    /// Set once shutdown begins: retries end here.
    deadline: &'a mut Option<Instant>,
    grace: Duration,
}

impl Stop<'_> {
    fn deadline(&mut self) -> Option<Instant> {
        if self.cancel.is_cancelled() {
            let grace = self.grace;
            return Some(*self.deadline.get_or_insert_with(|| Instant::now() + grace));
        }
        *self.deadline
    }
}

/// Writes one batch, retrying with backoff; once shutdown began, gives up at its deadline and
/// journals the batch. Returns false when it journaled.
async fn write(
    store: &Arc<dyn Store>,
    stats: &BillingStats,
    items: &[Item],
    mut stop: Stop<'_>,
    journal_path: Option<&std::path::Path>,
    tasks: &Tasks,
) -> bool {
    let settlements: Vec<Settlement> = items.iter().map(|i| i.settlement.clone()).collect();
    let mut attempt = 0u32;
    let mut pause = RETRY_FIRST;
    let results = loop {
        let outcome = match tokio::time::timeout(WRITE_TIMEOUT, store.settle(&settlements)).await {
            Ok(outcome) => outcome.map_err(|e| crate::error::chain(&e)),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        };
        match outcome {
            Ok(results) => break results,
            Err(err) => {
                attempt += 1;
                tracing::error!(error = %err, settlements = items.len(), attempt, "settlement write failed; retrying");
                if stop.deadline().is_some_and(|d| Instant::now() + pause >= d) {
                    journal_rest(items, journal_path, stats).await;
                    return false;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    // Shutdown began: the next round applies its deadline.
                    () = stop.cancel.cancelled(), if stop.deadline.is_none() => {}
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    };
    for (item, result) in items.iter().zip(&results) {
        if result.charged.is_positive() {
            stats.charged.note(item.settlement.usage.user_id);
        }
    }
    let events: Vec<AuditEvent> =
        items.iter().zip(&results).filter_map(|(item, result)| after_write(stats, item, result)).collect();
    if !events.is_empty() {
        // Off the writer: audit rows must not hold back the settlements behind them.
        let store = store.clone();
        tasks.spawn("billing-audit", async move {
            for event in events {
                match tokio::time::timeout(WRITE_TIMEOUT, store.record_audit(&event)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %crate::error::chain(&err), event_type = %event.event_type, "could not write audit event"),
                    Err(_) => tracing::error!(event_type = %event.event_type, "could not write audit event in time"),
                }
            }
        });
    }
    true
}

/// Credits the book back for what the ledger now has; what went wrong, as an audit event.
fn after_write(stats: &BillingStats, item: &Item, result: &layers_store::SettleResult) -> Option<AuditEvent> {
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
    let usage = &item.settlement.usage;
    let refused = result.outcome == SettleOutcome::Refused || item.outcome == Outcome::LeaseGone;
    if refused {
        stats.refused_settlements.fetch_add(1, Ordering::Relaxed);
        let meta = serde_json::json!({"usage_id": usage.id, "cost_micros": usage.cost.0, "charged_micros": 0});
        return Some(audit(item, "late_settlement_refused", meta));
    }
    if result.outcome == SettleOutcome::Applied && usage.shortfall.is_positive() {
        stats.shortfalls.fetch_add(1, Ordering::Relaxed);
        stats.shortfall_micros.fetch_add(usage.shortfall.0 as u64, Ordering::Relaxed);
        let meta = serde_json::json!({
            "usage_id": usage.id, "cost_micros": usage.cost.0, "held_micros": usage.held.0,
            "charged_micros": result.charged.0, "shortfall_micros": usage.shortfall.0,
        });
        return Some(audit(item, "billing_shortfall", meta));
    }
    None
}

async fn journal_rest(items: &[Item], path: Option<&std::path::Path>, stats: &BillingStats) {
    if items.is_empty() {
        return;
    }
    let settlements: Vec<&Settlement> = items.iter().map(|i| &i.settlement).collect();
    match path {
        Some(path) => match journal::append(path, &settlements).await {
            Ok(()) => {
                stats.journaled.fetch_add(items.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    settlements = items.len(),
                    "database unreachable at shutdown: settlements journaled for the next start"
                );
            }
            Err(err) => {
                tracing::error!(error = %crate::error::chain(&err), settlements = items.len(), "settlements lost: the journal cannot be written")
            }
        },
        None => tracing::error!(
            settlements = items.len(),
            "settlements lost: database unreachable at shutdown and no journal"
        ),
    }
}

fn audit(item: &Item, event_type: &str, metadata: serde_json::Value) -> AuditEvent {
    let user = item.settlement.usage.user_id;
    tracing::warn!(user_id = %user, event_type, "billing event");
    AuditEvent {
        id: Uuid::new_v4(),
        created_at: time::OffsetDateTime::now_utc(),
        user_id: Some(user),
        event_type: event_type.to_owned(),
        ip_address: None,
        user_agent: None,
        metadata,
        severity: Severity::Warning,
    }
}
