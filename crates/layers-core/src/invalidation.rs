//! Follows the database's change feed so that every node drops a revoked key or a changed
//! account within a poll interval (SPEC §3: within one second on every node), and answers
//! reclaims of credit its leases hold.
//! Invariant: each poll re-reads an overlap window, so an event committed late (its transaction
//! began before the previous poll) is still seen.

use std::sync::Arc;
use std::time::Duration;

use layers_store::{CacheScope, Store};

use crate::auth::cache::KeyCache;
use crate::billing::Billing;
use crate::tasks::Tasks;

/// Events are re-read for this long after they were created.
const OVERLAP: time::Duration = time::Duration::seconds(3);

pub fn spawn_follower(store: Arc<dyn Store>, cache: Arc<KeyCache>, billing: Billing, tasks: &Tasks, every: Duration) {
    let cancel = tasks.cancelled();
    tasks.spawn("cache-invalidation", async move {
        let mut since = match store.db_now().await {
            Ok(now) => now - OVERLAP,
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), "cannot read the database clock; clearing caches on first poll");
                time::OffsetDateTime::UNIX_EPOCH
            }
        };
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let started = tokio::time::Instant::now();
            let poll = async {
                Ok::<_, layers_store::StoreError>((store.db_now().await?, store.cache_events_since(since).await?))
            };
            match poll.await {
                Ok((now, events)) => {
                    if !healthy {
                        // Events may have been missed while the database was away.
                        cache.clear();
                        healthy = true;
                        tracing::info!("cache invalidation feed recovered");
                    }
                    for event in &events {
                        match (event.scope, &event.key_hash, event.reclaim_epoch) {
                            (CacheScope::Key, Some(hash), _) => cache.remove(hash),
                            (CacheScope::Credit, _, Some(epoch)) => billing.reclaim_requested(event.user_id, epoch),
                            (CacheScope::Credit, _, None) => {}
                            _ => {
                                cache.remove_user(event.user_id);
                                billing.account_changed(event.user_id);
                            }
                        }
                    }
                    since = now - OVERLAP;
                    cache.feed_read(started);
                }
                Err(err) => {
                    if healthy {
                        tracing::warn!(error = %crate::error::chain(&err), "cannot read the cache invalidation feed");
                    }
                    healthy = false;
                }
            }
        }
    });
}
