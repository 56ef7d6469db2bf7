//! Lease upkeep on every node: give back credit a key stopped using, renew the leases in use,
//! and reap the leases of nodes that died. Invariant: a lease the database still has is either
//! renewed by its node or, after its TTL, returned to the balance by a reaper.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use layers_domain::MicroCredits;
use tokio::time::Instant;
use uuid::Uuid;

use super::{reset_book, Inner};
use crate::tasks::Tasks;

const TICK: Duration = Duration::from_millis(250);

pub(super) fn spawn(inner: Weak<Inner>, tasks: &Tasks) {
    let cancel = tasks.cancelled();
    tasks.spawn("credit-lease-upkeep", async move {
        let mut last_renew = Instant::now();
        let mut last_reap: Option<Instant> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            let Some(inner) = inner.upgrade() else { return };
            release_idle(&inner).await;
            if last_renew.elapsed() >= inner.settings.lease_ttl / 3 {
                renew(&inner).await;
                last_renew = Instant::now();
            }
            if last_reap.is_none_or(|t| t.elapsed() >= inner.settings.reaper_interval) {
                reap(&inner).await;
                last_reap = Some(Instant::now());
            }
        }
    });
}

/// Returns the unspent credit of keys that have been idle, ending their leases.
async fn release_idle(inner: &Arc<Inner>) {
    let accounts = inner.registry.all();
    let mut idle_keys = Vec::new();
    for account in accounts {
        // Not while a refill of this key is in flight: it would grant onto the ended lease.
        let taken = {
            let Ok(_refill) = account.refill.try_lock() else { continue };
            let mut b = account.lock();
            let idle = b.last_active.elapsed() >= inner.settings.idle_release;
            if idle && b.book.held == 0 && b.book.unflushed == 0 {
                idle_keys.push(account.key);
            }
            if !(idle && b.leased_once && b.book.held == 0 && b.book.unflushed == 0) {
                None
            } else {
                let lease = b.book.lease;
                let amount = b.book.take_free(MicroCredits(lease));
                let id = b.lease_id;
                reset_book(&mut b, &account.credit);
                Some((id, amount))
            }
        };
        if let Some((lease, amount)) = taken {
            if let Err(err) = inner.store.return_lease(account.user, lease, amount, true).await {
                // Not lost: the lease is no longer renewed, so the reaper returns it after its TTL.
                tracing::warn!(error = %err, "could not return an idle lease");
            }
        }
    }
    // Every Arc of this scan is dropped now: an account referenced elsewhere stays.
    for key in idle_keys {
        inner.registry.forget_idle(key, inner.settings.idle_release * 30);
    }
}

async fn renew(inner: &Arc<Inner>) {
    // One snapshot per account, taken under its lock: the lease it had, if the database has it.
    let leases: Vec<_> = inner
        .registry
        .all()
        .into_iter()
        .filter_map(|a| {
            let b = a.lock();
            b.leased_once.then_some(b.lease_id).map(|id| (a.clone(), id))
        })
        .collect();
    if leases.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = leases.iter().map(|(_, id)| *id).collect();
    match inner.store.renew_leases(inner.node, &ids, inner.settings.lease_ttl).await {
        Ok(alive) => {
            let alive: HashSet<Uuid> = alive.into_iter().collect();
            for (account, id) in &leases {
                if alive.contains(id) {
                    continue;
                }
                let mut b = account.lock();
                if b.lease_id == *id && b.leased_once {
                    tracing::warn!(user_id = %account.user, "a credit lease was reaped while in use; starting a new one");
                    reset_book(&mut b, &account.credit);
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, leases = ids.len(), "could not renew credit leases"),
    }
}

async fn reap(inner: &Arc<Inner>) {
    match inner.store.reap_expired_leases().await {
        Ok(r) if r.leases > 0 => {
            tracing::info!(leases = r.leases, micro_credits = r.micros, "reaped expired credit leases")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not reap expired credit leases"),
    }
}

/// Ends every lease of this node (graceful shutdown, after the settlement writer flushed).
pub(super) async fn release_all(inner: &Arc<Inner>) {
    for account in inner.registry.all() {
        let taken = {
            let mut b = account.lock();
            if !b.leased_once {
                continue;
            }
            let lease = b.book.lease;
            let amount = b.book.take_free(MicroCredits(lease));
            let id = b.lease_id;
            reset_book(&mut b, &account.credit);
            (id, amount)
        };
        if let Err(err) = inner.store.return_lease(account.user, taken.0, taken.1, true).await {
            tracing::warn!(error = %err, "could not return a credit lease at shutdown; the reaper will");
        }
    }
}
