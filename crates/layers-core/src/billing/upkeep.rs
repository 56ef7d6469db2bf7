//! Lease upkeep on every node, as three tasks that never wait on one another: renew the leases
//! in use (one call for all of them), give back credit keys stopped using (one call for all of
//! them), and reap the leases of nodes that died. Invariant: a lease the database still has is
//! either renewed by its node or, after its TTL, returned to the balance by a reaper.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use layers_domain::MicroCredits;
use layers_store::LeaseReturn;
use tokio::time::Instant;
use uuid::Uuid;

use super::books::{Book, KeyAccount};
use super::refill::reset_book;
use super::Inner;
use crate::tasks::Tasks;

const RELEASE_TICK: Duration = Duration::from_millis(250);
const RETURNS_PER_CALL: usize = 500;

pub(super) fn spawn(inner: &Arc<Inner>, tasks: &Tasks) {
    let every = inner.settings.lease_ttl / 3;
    periodic(inner, tasks, "credit-lease-renewal", every, |inner| async move { renew(&inner).await });
    periodic(inner, tasks, "credit-lease-release", RELEASE_TICK, |inner| async move { release_idle(&inner).await });
    let every = inner.settings.reaper_interval;
    periodic(inner, tasks, "credit-lease-reaper", every, |inner| async move { reap(&inner).await });
}

/// Runs `work` now and then every `every` until shutdown, on a weak reference to the engine.
fn periodic<F, Fut>(inner: &Arc<Inner>, tasks: &Tasks, name: &'static str, every: Duration, work: F)
where
    F: Fn(Arc<Inner>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let cancel = tasks.cancelled();
    tasks.spawn(name, async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            work(inner).await;
        }
    });
}

/// Gives back the unspent credit of keys that have been idle (or of accounts that are tight,
/// as soon as nothing is held), ending their leases: one database call for all of them.
async fn release_idle(inner: &Arc<Inner>) {
    let mut returns = Vec::new();
    let mut forget = Vec::new();
    for account in inner.registry.all() {
        // Not while a refill of this key is in flight: it would grant onto the ended lease.
        let Ok(_refill) = account.refill.try_lock() else { continue };
        let tight = inner.registry.is_tight(&account.credit);
        let mut b = account.lock();
        let idle = b.last_active.elapsed() >= inner.settings.idle_release;
        let quiet = b.book.held == 0 && b.book.unflushed == 0;
        if idle && quiet {
            forget.push(account.key);
        }
        if (idle || tight) && quiet && b.leased_once {
            returns.push(end_lease(&account, &mut b));
        }
    }
    // A few hundred per call: one call per idle key would starve everything else, and one call
    // for ten thousand would hold SQLite's write lock too long.
    for chunk in returns.chunks(RETURNS_PER_CALL) {
        if let Err(err) = inner.gate.run(inner.store.return_leases(chunk)).await {
            // Not lost: the leases are no longer renewed, so the reaper returns them after their TTL.
            tracing::warn!(error = %crate::error::chain(&err), leases = chunk.len(), "could not return idle leases");
        }
    }
    for key in forget {
        inner.registry.forget_idle(key, inner.settings.idle_release * 30);
    }
}

/// Ends the book's lease here and says what to give back to the database.
fn end_lease(account: &KeyAccount, b: &mut Book) -> LeaseReturn {
    let lease = b.book.lease;
    let amount = b.book.take_free(MicroCredits(lease));
    let r = LeaseReturn { user: account.user, lease: b.lease_id, amount, end: true, reclaim_epoch: None };
    reset_book(b, &account.credit);
    r
}

async fn renew(inner: &Arc<Inner>) {
    renew_these(inner, inner.registry.all()).await;
}

/// Renews the leases of these accounts now; one the database ended (a refund took the credit it
/// held) is dropped here at once, so the account's next request asks for a new one.
pub(super) async fn renew_these(inner: &Arc<Inner>, accounts: Vec<Arc<KeyAccount>>) {
    // One snapshot per account, taken under its lock: the lease it had, if the database has it.
    let leases: Vec<(Arc<KeyAccount>, Uuid)> = accounts
        .into_iter()
        .filter_map(|a| {
            let id = {
                let b = a.lock();
                b.leased_once.then_some(b.lease_id)
            };
            id.map(|id| (a, id))
        })
        .collect();
    if leases.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = leases.iter().map(|(_, id)| *id).collect();
    let sent = Instant::now();
    match inner.gate.run(inner.store.renew_leases(inner.node, &ids, inner.settings.lease_ttl)).await {
        Ok(alive) => {
            let alive: HashSet<Uuid> = alive.into_iter().collect();
            for (account, id) in &leases {
                let mut b = account.lock();
                if b.lease_id != *id || !b.leased_once {
                    continue;
                }
                if alive.contains(id) {
                    b.extended(sent, inner.settings.lease_ttl);
                } else {
                    tracing::warn!(user_id = %account.user, "a credit lease was reaped while in use; starting a new one");
                    reset_book(&mut b, &account.credit);
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %crate::error::chain(&err), leases = ids.len(), "could not renew credit leases")
        }
    }
}

async fn reap(inner: &Arc<Inner>) {
    match inner.gate.run(inner.store.reap_expired_leases()).await {
        Ok(r) if r.leases > 0 => {
            tracing::info!(leases = r.leases, micro_credits = r.micros, "reaped expired credit leases")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %crate::error::chain(&err), "could not reap expired credit leases"),
    }
}

/// Ends every lease of this node (graceful shutdown, after the settlement writer flushed). A
/// lease with settlements still unwritten (journaled for the next start) stays: it must still
/// be active when the journal is replayed, and the reaper returns it if the node never comes back.
pub(super) async fn release_all(inner: &Arc<Inner>) {
    let mut returns = Vec::new();
    for account in inner.registry.all() {
        let mut b = account.lock();
        if !b.leased_once || b.book.unflushed > 0 {
            continue;
        }
        returns.push(end_lease(&account, &mut b));
    }
    for chunk in returns.chunks(RETURNS_PER_CALL) {
        if let Err(err) = inner.gate.run(inner.store.return_leases(chunk)).await {
            tracing::warn!(error = %crate::error::chain(&err), "could not return credit leases at shutdown; the reaper will");
        }
    }
}

#[cfg(test)]
#[path = "upkeep_tests.rs"]
mod tests;
