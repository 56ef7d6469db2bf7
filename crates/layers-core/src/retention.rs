//! Usage retention (SPEC §8.5, data minimisation): with `privacy.usage_retention_days` set,
//! usage rows older than that are deleted, in batches, every hour on every node (deleting is
//! idempotent, so nodes need no coordination). The ledger, the per-day spend roll-ups and the
//! audit trail are kept: balances, statements and limits do not change.

use std::sync::Arc;
use std::time::Duration;

use layers_store::Store;

use crate::clock::Clock;
use crate::error::ServiceResult;
use crate::tasks::Tasks;

/// Rows deleted per statement, and statements per run at most.
const BATCH: u32 = 5_000;
const BATCHES_PER_RUN: usize = 200;
const EVERY: Duration = Duration::from_secs(3600);
const FIRST_AFTER: Duration = Duration::from_secs(300);

/// Deletes the usage rows older than `keep`; how many went.
pub async fn prune(store: &dyn Store, clock: &Clock, keep: Duration) -> ServiceResult<u64> {
    let keep = time::Duration::try_from(keep).unwrap_or(time::Duration::MAX);
    let before = clock.now().checked_sub(keep).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut total = 0;
    for _ in 0..BATCHES_PER_RUN {
        let n = store.prune_usage(before, BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            break;
        }
    }
    Ok(total)
}

pub(crate) fn spawn(store: Arc<dyn Store>, clock: Clock, keep: Duration, tasks: &Tasks) {
    tasks.spawn_every("usage-retention", FIRST_AFTER, EVERY, move || {
        let (store, clock) = (store.clone(), clock.clone());
        async move {
            match prune(store.as_ref(), &clock, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned usage rows past the retention period"),
                Err(err) => tracing::warn!(error = %crate::error::chain(&err), "could not prune usage rows"),
            }
        }
    });
}
