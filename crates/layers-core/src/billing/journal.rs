//! The settlement journal: settlements a shutdown could not write (the database stayed away past
//! its deadline) are appended to a local file, one JSON line each, and written at the next start.
//! Invariant: replay is idempotent (settlement is, by usage id), and the file is removed only
//! once everything in it is written; a line that does not parse is kept aside, never dropped.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use layers_domain::MicroCredits;
use layers_store::{LeaseReturn, Settlement, Store};
use tokio::io::AsyncWriteExt;

use super::BillingStats;

/// Appends settlements to the journal and flushes them to disk.
pub(super) async fn append(path: &Path, settlements: &[&Settlement]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut text = Vec::new();
    for s in settlements {
        serde_json::to_writer(&mut text, s)?;
        text.push(b'\n');
    }
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
    file.write_all(&text).await?;
    file.sync_all().await
}

/// Writes what a previous shutdown journaled, then ends the leases those settlements drew on
/// (their node is gone; the rest of their credit returns to the balance).
pub(super) async fn replay(path: &Path, store: &Arc<dyn Store>, stats: &BillingStats) {
    // Moved aside first: a process sharing the data directory may append to a new journal
    // meanwhile, and removing the file afterwards must not take its lines with it. A replay cut
    // short leaves the file aside, picked up at the next start.
    let aside = path.with_extension("replaying");
    match tokio::fs::rename(path, &aside).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::error!(error = %crate::error::chain(&err), "cannot move the settlement journal aside; it is kept for the next start");
            return;
        }
    }
    let text = match tokio::fs::read_to_string(&aside).await {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            tracing::error!(error = %crate::error::chain(&err), "cannot read the settlement journal; it is kept for the next start");
            return;
        }
    };
    let mut settlements = Vec::new();
    let mut unreadable = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Settlement>(line) {
            Ok(s) => settlements.push(s),
            Err(_) => unreadable += 1,
        }
    }
    for chunk in settlements.chunks(1_000) {
        if let Err(err) = store.settle(chunk).await {
            tracing::error!(error = %crate::error::chain(&err), "cannot replay the settlement journal; it is kept for the next start");
            return;
        }
    }
    let mut leases = HashSet::new();
    let returns: Vec<LeaseReturn> = settlements
        .iter()
        .filter_map(|s| s.lease_id.map(|lease| (s.usage.user_id, lease)))
        .filter(|l| leases.insert(*l))
        .map(|(user, lease)| LeaseReturn { user, lease, amount: MicroCredits::ZERO, end: true, reclaim_epoch: None })
        .collect();
    if let Err(err) = store.return_leases(&returns).await {
        tracing::warn!(error = %crate::error::chain(&err), "could not end the journaled leases; the reaper will");
    }
    stats.replayed.fetch_add(settlements.len() as u64, Ordering::Relaxed);
    let done = if unreadable > 0 {
        let kept = path.with_extension("unreadable");
        tracing::error!(lines = unreadable, file = %kept.display(), "settlement journal lines that do not parse were set aside");
        tokio::fs::rename(&aside, &kept).await
    } else {
        tokio::fs::remove_file(&aside).await
    };
    match done {
        Ok(()) => tracing::info!(settlements = settlements.len(), "settlement journal replayed"),
        Err(err) => {
            tracing::error!(error = %crate::error::chain(&err), "the replayed settlement journal could not be removed")
        }
    }
}
