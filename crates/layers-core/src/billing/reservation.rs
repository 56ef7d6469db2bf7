//! One request's hold, and how it ends. Invariant: the charge is decided here, in memory and
//! never awaiting, from the book the hold is on (so it is safe in `Drop`); what the client is
//! told is exactly what the settlement asks the ledger to debit.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use layers_domain::MicroCredits;
use layers_store::{Settlement, UsageRecord};
use tokio::time::Instant;
use uuid::Uuid;

use super::books::KeyAccount;
use super::settler::Outcome;
use super::Inner;

/// Credit held for one request. Settle it or release it; dropping it releases it.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    account: Arc<KeyAccount>,
    held: MicroCredits,
    lease_id: Uuid,
    per_request_cap: Option<MicroCredits>,
    open: bool,
}

/// What a settled request was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Exactly what the ledger debits for the request.
    pub charged: MicroCredits,
    /// Approximately what the account still has available.
    pub remaining: MicroCredits,
}

impl Reservation {
    pub(super) fn new(
        inner: Arc<Inner>,
        account: Arc<KeyAccount>,
        held: MicroCredits,
        lease_id: Uuid,
        per_request_cap: Option<MicroCredits>,
    ) -> Reservation {
        Reservation { inner, account, held, lease_id, per_request_cap, open: true }
    }

    pub fn held(&self) -> MicroCredits {
        self.held
    }

    /// Settles to the actual cost (`usage.cost`) and queues the usage row and ledger debit.
    /// A cost beyond the hold is paid from the lease's free credit, within the per-request cap;
    /// what even that cannot cover is a shortfall, recorded and charged to no one.
    pub fn settle(mut self, mut usage: UsageRecord) -> Charge {
        self.open = false;
        usage.held = self.held;
        let (charged, live) = {
            let mut b = self.account.lock();
            if b.lease_id != self.lease_id {
                // The lease this hold was on has ended (its book was reset, pending and all):
                // nothing can be charged against it.
                (MicroCredits::ZERO, false)
            } else {
                let credit = &self.account.credit;
                credit.pending.fetch_sub(self.held.0, Ordering::Relaxed);
                let s = b.book.settle(self.held, usage.cost, self.per_request_cap);
                credit.pending.fetch_add(s.charged.0, Ordering::Relaxed);
                b.last_active = Instant::now();
                (s.charged, true)
            }
        };
        usage.charged = charged;
        usage.shortfall = usage.cost.saturating_sub(charged);
        let remaining = MicroCredits(self.account.credit.remaining());
        let lease_id = charged.is_positive().then_some(self.lease_id);
        let settlement = Settlement { usage, lease_id };
        if live {
            self.inner.sink.send(settlement, Some((self.account.clone(), self.lease_id)), Outcome::Settled);
        } else {
            self.inner.sink.send(settlement, None, Outcome::LeaseGone);
        }
        Charge { charged, remaining }
    }

    /// Ends the hold without charging; the usage row is still recorded.
    pub fn release(mut self, mut usage: UsageRecord) -> Charge {
        self.release_hold();
        usage.held = self.held;
        usage.charged = MicroCredits::ZERO;
        self.inner.sink.send(Settlement { usage, lease_id: None }, None, Outcome::Settled);
        Charge { charged: MicroCredits::ZERO, remaining: MicroCredits(self.account.credit.remaining()) }
    }

    fn release_hold(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut b = self.account.lock();
        // A reset book already forgot this hold (and its share of `pending`).
        if b.lease_id == self.lease_id {
            self.account.credit.pending.fetch_sub(self.held.0, Ordering::Relaxed);
            b.book.release(self.held);
            b.last_active = Instant::now();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A hold must never leak: that would shrink the available credit until restart.
        self.release_hold();
    }
}
