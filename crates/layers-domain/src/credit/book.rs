//! One node's book for one key: credit leased from the database and what is held or charged
//! against it in memory. Invariant: `held + unflushed <= lease`, so a charge never exceeds what
//! the database set aside for this node, and the database can always apply it in full.

use crate::money::MicroCredits;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseBook {
    /// Credit this node holds from the database for the key, not yet debited there.
    pub lease: i64,
    /// Sum of open holds.
    pub held: i64,
    /// Charges settled here but not yet written to the ledger (still inside `lease`).
    pub unflushed: i64,
}

/// The outcome of settling one hold: exactly what the ledger will debit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// What the request is charged: its cost, unless a cap or the lease stops it.
    pub charged: MicroCredits,
    /// Cost that was not charged (recorded as a shortfall, paid by no one).
    pub shortfall: MicroCredits,
}

impl LeaseBook {
    /// Credit available for new holds.
    pub fn free(&self) -> i64 {
        self.lease - self.held - self.unflushed
    }

    /// Places a hold when the free credit covers it.
    pub fn try_hold(&mut self, amount: MicroCredits) -> bool {
        if amount.0 < 0 || self.free() < amount.0 {
            return false;
        }
        self.held += amount.0;
        true
    }

    /// Adds credit granted by the database.
    pub fn add_lease(&mut self, granted: MicroCredits) {
        self.lease += granted.0.max(0);
    }

    /// Ends a hold of `held` with an actual cost of `cost`. The charge is the cost, but never
    /// more than `cap` (the per-request cap) nor more than the lease can cover once this hold
    /// is released: a cost beyond the hold is paid from the lease's free credit, which the
    /// database granted within every cap, so the hourly and lifetime caps hold too.
    pub fn settle(&mut self, held: MicroCredits, cost: MicroCredits, cap: Option<MicroCredits>) -> Settled {
        self.held = (self.held - held.0).max(0);
        let cost = cost.0.max(0);
        let capped = cap.map_or(cost, |c| cost.min(c.0.max(held.0)));
        let charged = capped.min(self.free().max(0));
        self.unflushed += charged;
        Settled { charged: MicroCredits(charged), shortfall: MicroCredits(cost - charged) }
    }

    /// Releases a hold without charging (the request failed or never started).
    pub fn release(&mut self, held: MicroCredits) {
        self.held = (self.held - held.0).max(0);
    }

    /// The ledger now has `amount` of the unflushed charges: they leave the lease.
    pub fn flushed(&mut self, amount: MicroCredits) {
        self.unflushed -= amount.0;
        self.lease -= amount.0;
    }

    /// Takes back up to `amount` of free credit (to return it to the database).
    pub fn take_free(&mut self, amount: MicroCredits) -> MicroCredits {
        let take = amount.0.min(self.free()).max(0);
        self.lease -= take;
        MicroCredits(take)
    }

    /// The invariant every operation keeps.
    pub fn is_consistent(&self) -> bool {
        self.lease >= 0 && self.held >= 0 && self.unflushed >= 0 && self.held + self.unflushed <= self.lease
    }
}
