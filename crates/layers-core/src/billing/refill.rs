//! Getting credit into a key's book: holds on it, refills from the database, and reclaims of
//! credit that other leases of the account hold idle. Invariant: the book learns of every grant
//! the database made (the database call runs in a task the engine owns, so a request that goes
//! away mid-refill cannot lose one), and a reclaim gives back only free credit, never what
//! requests in flight hold.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use layers_domain::credit::{EffectiveCaps, GrantDecision};
use layers_domain::{MicroCredits, UserId};
use layers_store::{LeaseRequest, LeaseReturn};
use tokio::time::Instant;
use uuid::Uuid;

use super::books::{Book, KeyAccount, UserCredit};
use super::gate::Unavailable;
use super::reservation::Reservation;
use super::{BillingError, Inner};
use crate::broadcast::Notice;

/// How long an account stays tight (leases sized to each request) after a reclaim or a grant
/// that could not give a comfortable block.
const TIGHT_FOR: Duration = Duration::from_secs(10);

/// Places a hold on the key's lease when it is usable and covers `amount`.
pub(super) fn try_hold(
    inner: &Arc<Inner>,
    account: &Arc<KeyAccount>,
    amount: MicroCredits,
    per_request_cap: Option<MicroCredits>,
) -> Option<Reservation> {
    let mut b = account.lock();
    let now = Instant::now();
    if !b.usable(now) || !b.book.try_hold(amount) {
        return None;
    }
    b.last_active = now;
    account.credit.pending.fetch_add(amount.0, Ordering::Relaxed);
    Some(Reservation::new(inner.clone(), account.clone(), amount, b.lease_id, per_request_cap))
}

/// Leases at least what the book lacks for `need`. The database call and the book update run in
/// a task the engine owns.
pub(super) async fn refill(
    inner: &Arc<Inner>,
    account: &Arc<KeyAccount>,
    need: MicroCredits,
    caps: &EffectiveCaps,
) -> Result<GrantDecision, BillingError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (this, account, caps) = (inner.clone(), account.clone(), *caps);
    inner.tasks.spawn_work("lease-refill", async move {
        let _ = tx.send(refill_now(&this, &account, need, &caps).await);
    });
    rx.await.unwrap_or(Err(BillingError::Unavailable(Unavailable::Down)))
}

async fn refill_now(
    inner: &Inner,
    account: &KeyAccount,
    need: MicroCredits,
    caps: &EffectiveCaps,
) -> Result<GrantDecision, BillingError> {
    inner.stats.refills.fetch_add(1, Ordering::Relaxed);
    for _ in 0..2 {
        let tight = inner.registry.is_tight(&account.credit);
        let (lease_id, min, want) = {
            let b = account.lock();
            // An expired book is renewed by this grant; what it has free counts again then.
            let free = if b.usable(Instant::now()) { b.book.free() } else { 0 };
            let min = (need.0 - free).max(1);
            let hot = b.last_refill.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
            let block = if tight {
                min
            } else if hot {
                b.block.saturating_mul(2)
            } else {
                need.0.saturating_mul(4)
            };
            (b.lease_id, min, block.clamp(min, inner.settings.max_block.0.max(min)))
        };
        let req = LeaseRequest {
            lease_id,
            user: account.user,
            key: account.key,
            node: inner.node,
            min: MicroCredits(min),
            want: MicroCredits(want),
            account_hour_cap: caps.account_per_hour,
            key_hour_cap: caps.key_per_hour,
            key_total_cap: caps.key_total,
            key_period_from_day: caps.key_total_from_day,
            ttl: inner.settings.lease_ttl,
        };
        let sent = Instant::now();
        let grant = inner.gate.call(inner.store.acquire_lease(&req)).await?;
        account.credit.balance.store(grant.balance.0, Ordering::Relaxed);
        if grant.room().0 - grant.granted.0 < want {
            // The account cannot give a comfortable block any more: lease only what is needed,
            // so nothing sits idle here that another key or node may need.
            inner.registry.tighten(&account.credit, TIGHT_FOR);
        }
        let mut b = account.lock();
        if grant.lease_ended {
            // The reaper ended our lease while this node was stalled: start a new one.
            if b.lease_id == lease_id {
                reset_book(&mut b, &account.credit);
            }
            continue;
        }
        if grant.granted.is_positive() && b.lease_id == lease_id {
            b.book.add_lease(grant.granted);
            b.leased_once = true;
            b.block = want;
            b.last_refill = Some(Instant::now());
            // Just granted for a waiting request: not idle, whatever the database call took
            // (the idle release would otherwise end it before the request could hold on it).
            b.last_active = Instant::now();
            b.extended(sent, inner.settings.lease_ttl);
        }
        return Ok(grant);
    }
    Err(BillingError::Unavailable(Unavailable::Down))
}

/// Forgets a lease the database no longer has: what it held is gone with it.
pub(super) fn reset_book(b: &mut Book, credit: &UserCredit) {
    credit.pending.fetch_sub(b.book.held + b.book.unflushed, Ordering::Relaxed);
    b.book = Default::default();
    b.lease_id = Uuid::now_v7();
    b.leased_once = false;
    b.block = 0;
    b.last_refill = None;
    b.valid_until = None;
}

/// Asks every lease of the account for its free credit: this node's other keys answer at once,
/// other nodes through the change feed (and Redis, when configured). Returns the reclaim's epoch.
pub(super) async fn request_reclaim(inner: &Arc<Inner>, account: &Arc<KeyAccount>) -> Result<i64, BillingError> {
    let epoch = inner.gate.call(inner.store.request_reclaim(account.user)).await?;
    tracing::debug!(user_id = %account.user, epoch, "asked the account's other leases for their free credit");
    // This node answers below, for every key but the one asking: its own notice, back over the
    // feed or Redis, must not take that key's credit too.
    account.credit.reclaim_answered.fetch_max(epoch, Ordering::Relaxed);
    // The change feed tells every node within a poll; Redis, when configured, at once.
    inner.broadcaster.publish(Notice::Reclaim(account.user, epoch)).await;
    inner.registry.tighten(&account.credit, TIGHT_FOR);
    answer_reclaim(inner, account.user, epoch, Some(account.key)).await;
    Ok(epoch)
}

/// Gives back the free credit of this node's leases of `user` (but `except`'s), answering
/// reclaim `epoch`. A lease whose return fails keeps its credit (it is still leased).
pub(super) async fn answer_reclaim(inner: &Arc<Inner>, user: UserId, epoch: i64, except: Option<layers_domain::KeyId>) {
    let accounts = inner.registry.of_user(user);
    let Some(credit) = accounts.first().map(|a| a.credit.clone()) else { return };
    if except.is_none() && credit.reclaim_answered.fetch_max(epoch, Ordering::Relaxed) >= epoch {
        return;
    }
    inner.registry.tighten(&credit, TIGHT_FOR);
    let mut returns = Vec::new();
    let mut taken = Vec::new();
    for account in accounts.iter().filter(|a| Some(a.key) != except) {
        let mut b = account.lock();
        if !b.leased_once {
            continue;
        }
        let lease = b.book.lease;
        let amount = b.book.take_free(MicroCredits(lease));
        returns.push(LeaseReturn { user, lease: b.lease_id, amount, end: false, reclaim_epoch: Some(epoch) });
        taken.push((account.clone(), b.lease_id, amount));
    }
    let result =
        if returns.is_empty() { Ok(Vec::new()) } else { inner.gate.run(inner.store.return_leases(&returns)).await };
    match result {
        Ok(active) => {
            credit.reclaim_answered.fetch_max(epoch, Ordering::Relaxed);
            for (account, lease, _) in taken.iter().filter(|(_, lease, _)| !active.contains(lease)) {
                let mut b = account.lock();
                if b.lease_id == *lease {
                    reset_book(&mut b, &account.credit);
                }
            }
        }
        Err(err) => {
            // Not put back: the return may have committed before the error (a timeout), and a
            // book must never hold credit the database no longer leases to it. Stranded at worst,
            // until the lease ends and gives back all it holds.
            tracing::warn!(error = %crate::error::chain(&err), "could not give credit back for a reclaim");
        }
    }
}
