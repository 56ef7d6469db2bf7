//! Lease upkeep on every node: give back credit a key stopped using, renew the leases in use,
//! and reap the leases of nodes that died. Invariant: a lease the database still has is either
//! renewed by its node or, after its TTL, returned to the balance by a reaper.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use layers_domain::MicroCredits;
use time::OffsetDateTime;
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
    for account in inner.registry.all() {
        // Not while a refill of this key is in flight: it would grant onto the ended lease.
        let Ok(_refill) = account.refill.try_lock() else { continue };
        let taken = {
            let mut b = account.lock();
            let idle = b.last_active.elapsed() >= inner.settings.idle_release;
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
        drop(_refill);
        inner.registry.forget_idle(account.key, inner.settings.idle_release * 30);
    }
}

async fn renew(inner: &Arc<Inner>) {
    let accounts: Vec<_> = inner.registry.all().into_iter().filter(|a| a.lock().leased_once).collect();
    if accounts.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.lock().lease_id).collect();
    let expires = OffsetDateTime::now_utc() + inner.settings.lease_ttl;
    match inner.store.renew_leases(inner.node, &ids, expires).await {
        Ok(alive) => {
            let alive: HashSet<Uuid> = alive.into_iter().collect();
            for (account, id) in accounts.iter().zip(&ids) {
                if alive.contains(id) {
                    continue;
                }
                let mut b = account.lock();
                if b.lease_id == *id {
                    tracing::warn!(user_id = %account.user, "a credit lease was reaped while in use; starting a new one");
                    reset_book(&mut b, &account.credit);
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, leases = ids.len(), "could not renew credit leases"),
    }
}

async fn reap(inner: &Arc<Inner>) {
    match inner.store.reap_expired_leases(OffsetDateTime::now_utc()).await {
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
