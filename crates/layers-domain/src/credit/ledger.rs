//! How the ledger moves: a batch of settlements (`settle_batch`), a ledger entry (`apply_entry`),
//! and [`Model`], the whole credit state of a database as plain data, which the stores' property
//! test drives side by side with SQLite and PostgreSQL. Invariant: a charge is applied only from
//! an active lease that still holds it, exactly once per usage id, so usage never takes a
//! balance below zero and balance = sum of the ledger.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::grant::{decide_grant, GrantAsk, GrantDecision, LeaseView, ThisLease};
use crate::ids::{KeyId, UserId};

/// A lease as a settlement batch sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseState {
    pub active: bool,
    /// Credit still leased (granted, not yet debited, not returned).
    pub amount: i64,
}

/// One settlement as the database receives it: what the node charged, against which lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub usage_id: Uuid,
    pub user: UserId,
    pub key: Option<KeyId>,
    pub lease: Option<Uuid>,
    pub amount: i64,
    /// The minute (Unix minutes) the spend counts in, for rolling-hour caps.
    pub minute: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already settled (a retried flush): nothing changes, no row is written again.
    Duplicate,
    /// Its lease had ended (reaped while the node was away) or no longer holds the charge:
    /// the usage row is recorded with nothing charged.
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// What the ledger debits.
    pub charged: i64,
    /// The balance after this row's debit (only for rows that debited).
    pub balance_after: Option<i64>,
}

/// What a batch reads and changes, loaded (and locked) by the store before deciding.
#[derive(Clone, Debug, Default)]
pub struct BatchState {
    pub balances: HashMap<UserId, i64>,
    pub leases: HashMap<Uuid, LeaseState>,
    /// Usage ids already recorded.
    pub existing: HashSet<Uuid>,
}

/// What a batch adds up to, so each counter is written once per batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchTotals {
    /// Per user: charged (balance and leased both go down by it).
    pub users: HashMap<UserId, i64>,
    pub leases: HashMap<Uuid, i64>,
    pub keys: HashMap<KeyId, i64>,
    pub buckets: HashMap<(UserId, Option<KeyId>, i64), i64>,
}

/// Decides every row of a batch, in order, moving `state` as it goes.
pub fn settle_batch(state: &mut BatchState, rows: &[Charge]) -> (Vec<Decision>, BatchTotals) {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut totals = BatchTotals::default();
    let decisions = rows
        .iter()
        .map(|c| {
            if state.existing.contains(&c.usage_id) || !seen.insert(c.usage_id) {
                return Decision { outcome: Outcome::Duplicate, charged: 0, balance_after: None };
            }
            let amount = c.amount.max(0);
            if amount == 0 {
                return Decision { outcome: Outcome::Applied, charged: 0, balance_after: None };
            }
            let lease = c.lease.and_then(|id| state.leases.get_mut(&id).filter(|l| l.active && l.amount >= amount));
            let (Some(lease), Some(lease_id)) = (lease, c.lease) else {
                return Decision { outcome: Outcome::Refused, charged: 0, balance_after: None };
            };
            lease.amount -= amount;
            let balance = state.balances.entry(c.user).or_default();
            *balance -= amount;
            *totals.users.entry(c.user).or_default() += amount;
            *totals.leases.entry(lease_id).or_default() += amount;
            if let Some(key) = c.key {
                *totals.keys.entry(key).or_default() += amount;
            }
            *totals.buckets.entry((c.user, c.key, c.minute)).or_default() += amount;
            Decision { outcome: Outcome::Applied, charged: amount, balance_after: Some(*balance) }
        })
        .collect();
    (decisions, totals)
}

/// What a ledger entry (grant, purchase, refund, adjustment) does to a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryDecision {
    Apply {
        balance_after: i64,
        /// The entry took the balance below what is leased (a refund): every active lease of
        /// the account ends, so nothing more is charged from credit that is gone.
        revoke_leases: bool,
    },
    /// A debit may not take credit that nodes hold for requests in flight.
    Insufficient { available: i64 },
    /// The amount overflows the balance.
    Overflow,
}

pub fn apply_entry(balance: i64, leased: i64, amount: i64, allow_negative: bool) -> EntryDecision {
    let Some(after) = balance.checked_add(amount) else { return EntryDecision::Overflow };
    if amount < 0 && after < leased && !allow_negative {
        return EntryDecision::Insufficient { available: balance - leased };
    }
    EntryDecision::Apply { balance_after: after, revoke_leases: after < leased }
}

/// Ends leases whose time is up, returning their credit: per user, the sum to un-lease.
pub fn reap<'a>(expired: impl IntoIterator<Item = (UserId, i64)> + 'a) -> HashMap<UserId, i64> {
    let mut per_user = HashMap::new();
    for (user, amount) in expired {
        *per_user.entry(user).or_default() += amount;
    }
    per_user
}

// === the model ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelLeaseState {
    Active,
    Released,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelLease {
    pub user: UserId,
    pub key: KeyId,
    pub node: Uuid,
    pub amount: i64,
    pub state: ModelLeaseState,
    /// Its time is up (the store's clock passed `expires_at`): the next reap ends it.
    pub expired: bool,
    pub reclaim_epoch: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelAccount {
    pub balance: i64,
    pub leased: i64,
    pub ledger_sum: i64,
    pub reclaim_epoch: i64,
}

/// A database's credit state as plain data, moved by the rules above. Spend buckets are kept
/// per (user, key) for the current hour only (the property test runs within minutes).
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub accounts: HashMap<UserId, ModelAccount>,
    pub leases: HashMap<Uuid, ModelLease>,
    pub key_spent: HashMap<KeyId, i64>,
    pub hour_spent: HashMap<(UserId, KeyId), i64>,
    pub usage: HashSet<Uuid>,
    pub idempotency: HashSet<String>,
}

impl Model {
    pub fn add_account(&mut self, user: UserId) {
        self.accounts.entry(user).or_default();
    }

    /// A ledger entry; `None` when it was not applied (duplicate, insufficient).
    pub fn apply_entry(&mut self, user: UserId, amount: i64, allow_negative: bool, key: &str) -> Option<i64> {
        if !self.idempotency.insert(key.to_owned()) {
            return None;
        }
        let a = self.accounts.entry(user).or_default();
        match apply_entry(a.balance, a.leased, amount, allow_negative) {
            EntryDecision::Apply { balance_after, revoke_leases } => {
                a.balance = balance_after;
                a.ledger_sum += amount;
                if revoke_leases {
                    self.revoke(user);
                }
                Some(balance_after)
            }
            EntryDecision::Insufficient { .. } | EntryDecision::Overflow => {
                self.idempotency.remove(key);
                None
            }
        }
    }

    fn revoke(&mut self, user: UserId) {
        for l in self.leases.values_mut().filter(|l| l.user == user && l.state == ModelLeaseState::Active) {
            l.state = ModelLeaseState::Expired;
        }
        if let Some(a) = self.accounts.get_mut(&user) {
            a.leased = 0;
        }
    }

    fn view(&self, lease: Uuid, user: UserId, key: KeyId) -> LeaseView {
        let a = self.accounts.get(&user).cloned().unwrap_or_default();
        let active = |l: &&ModelLease| l.user == user && l.state == ModelLeaseState::Active;
        LeaseView {
            balance: a.balance,
            leased: a.leased,
            this_lease: match self.leases.get(&lease) {
                None => ThisLease::New,
                Some(l) if l.state == ModelLeaseState::Active => ThisLease::Active { amount: l.amount },
                Some(_) => ThisLease::Ended,
            },
            key_leased: self.leases.values().filter(active).filter(|l| l.key == key).map(|l| l.amount).sum(),
            account_hour_spent: self.hour_spent.iter().filter(|((u, _), _)| *u == user).map(|(_, v)| v).sum(),
            key_hour_spent: self.hour_spent.get(&(user, key)).copied().unwrap_or(0),
            key_spent: self.key_spent.get(&key).copied().unwrap_or(0),
            others_unanswered: self
                .leases
                .iter()
                .filter(|(id, l)| **id != lease && active(l) && l.amount > 0 && l.reclaim_epoch < a.reclaim_epoch)
                .map(|(_, l)| l.amount)
                .sum(),
        }
    }

    pub fn acquire(&mut self, lease: Uuid, user: UserId, key: KeyId, node: Uuid, ask: &GrantAsk) -> GrantDecision {
        let d = decide_grant(&self.view(lease, user, key), ask);
        if d.granted.is_positive() {
            let l = self.leases.entry(lease).or_insert(ModelLease {
                user,
                key,
                node,
                amount: 0,
                state: ModelLeaseState::Active,
                expired: false,
                reclaim_epoch: 0,
            });
            l.amount += d.granted.0;
            l.expired = false;
            if let Some(a) = self.accounts.get_mut(&user) {
                a.leased += d.granted.0;
            }
        }
        d
    }

    /// Gives back up to `amount` of an active lease; `end` closes it (returning all it holds).
    pub fn return_lease(&mut self, user: UserId, lease: Uuid, amount: i64, end: bool, epoch: Option<i64>) -> bool {
        let Some(l) = self.leases.get_mut(&lease).filter(|l| l.user == user && l.state == ModelLeaseState::Active)
        else {
            return false;
        };
        let back = amount.clamp(0, l.amount);
        let released = if end { l.amount } else { back };
        // An ended lease gave back everything it held.
        l.amount = if end { 0 } else { l.amount - back };
        if end {
            l.state = ModelLeaseState::Released;
        }
        if let Some(e) = epoch {
            l.reclaim_epoch = l.reclaim_epoch.max(e);
        }
        if let Some(a) = self.accounts.get_mut(&user) {
            a.leased = (a.leased - released).max(0);
        }
        true
    }

    pub fn renew(&mut self, node: Uuid, leases: &[Uuid]) -> Vec<Uuid> {
        leases
            .iter()
            .filter(|id| {
                self.leases.get_mut(id).is_some_and(|l| {
                    let alive = l.node == node && l.state == ModelLeaseState::Active;
                    if alive {
                        l.expired = false;
                    }
                    alive
                })
            })
            .copied()
            .collect()
    }

    /// Starts a reclaim of the account's leases: returns the new epoch.
    pub fn request_reclaim(&mut self, user: UserId) -> i64 {
        let a = self.accounts.entry(user).or_default();
        a.reclaim_epoch += 1;
        a.reclaim_epoch
    }

    /// Ends every active lease whose time is up; returns (leases, credit returned).
    pub fn reap(&mut self) -> (u64, i64) {
        let ended: Vec<(UserId, i64)> = self
            .leases
            .values_mut()
            .filter(|l| l.state == ModelLeaseState::Active && l.expired)
            .map(|l| {
                l.state = ModelLeaseState::Expired;
                (l.user, l.amount)
            })
            .collect();
        let count = ended.len() as u64;
        let total = ended.iter().map(|(_, a)| a).sum();
        for (user, amount) in reap(ended) {
            if let Some(a) = self.accounts.get_mut(&user) {
                a.leased = (a.leased - amount).max(0);
            }
        }
        (count, total)
    }

    pub fn settle(&mut self, rows: &[Charge]) -> Vec<Decision> {
        let mut state = BatchState {
            balances: self.accounts.iter().map(|(u, a)| (*u, a.balance)).collect(),
            leases: self
                .leases
                .iter()
                .map(|(id, l)| (*id, LeaseState { active: l.state == ModelLeaseState::Active, amount: l.amount }))
                .collect(),
            existing: self.usage.clone(),
        };
        let (decisions, totals) = settle_batch(&mut state, rows);
        for (c, d) in rows.iter().zip(&decisions) {
            if d.outcome != Outcome::Duplicate {
                self.usage.insert(c.usage_id);
            }
        }
        for (user, charged) in &totals.users {
            if let Some(a) = self.accounts.get_mut(user) {
                a.balance -= charged;
                a.leased = (a.leased - charged).max(0);
                a.ledger_sum -= charged;
            }
        }
        for (lease, charged) in &totals.leases {
            if let Some(l) = self.leases.get_mut(lease) {
                l.amount -= charged;
            }
        }
        for (key, charged) in &totals.keys {
            *self.key_spent.entry(*key).or_default() += charged;
        }
        for ((user, key, _), charged) in &totals.buckets {
            if let Some(key) = key {
                *self.hour_spent.entry((*user, *key)).or_default() += charged;
            }
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::MicroCredits;

    #[test]
    fn a_batch_applies_each_charge_once_from_a_live_lease() {
        let (user, key, lease, gone) = (UserId::random(), KeyId::random(), Uuid::new_v4(), Uuid::new_v4());
        let mut state = BatchState::default();
        state.balances.insert(user, 1_000);
        state.leases.insert(lease, LeaseState { active: true, amount: 300 });
        state.leases.insert(gone, LeaseState { active: false, amount: 300 });
        let charge = |id: Uuid, lease: Uuid, amount: i64| Charge {
            usage_id: id,
            user,
            key: Some(key),
            lease: Some(lease),
            amount,
            minute: 7,
        };
        let a = Uuid::new_v4();
        let rows = [
            charge(a, lease, 200),
            charge(a, lease, 200),
            charge(Uuid::new_v4(), gone, 50),
            charge(Uuid::new_v4(), lease, 150),
            charge(Uuid::new_v4(), lease, 0),
        ];
        let (d, totals) = settle_batch(&mut state, &rows);
        let outcomes: Vec<_> = d.iter().map(|d| (d.outcome, d.charged, d.balance_after)).collect();
        assert_eq!(
            outcomes,
            [
                (Outcome::Applied, 200, Some(800)),
                (Outcome::Duplicate, 0, None),
                (Outcome::Refused, 0, None),
                (Outcome::Refused, 0, None), // the lease holds only 100 more
                (Outcome::Applied, 0, None),
            ]
        );
        assert_eq!(totals.users[&user], 200);
        assert_eq!(totals.buckets[&(user, Some(key), 7)], 200);
    }

    #[test]
    fn a_refund_below_what_is_leased_ends_the_leases() {
        assert_eq!(apply_entry(100, 80, -50, false), EntryDecision::Insufficient { available: 20 });
        assert_eq!(apply_entry(100, 80, -50, true), EntryDecision::Apply { balance_after: 50, revoke_leases: true });
        assert_eq!(apply_entry(100, 80, -10, false), EntryDecision::Apply { balance_after: 90, revoke_leases: false });
        let mut m = Model::default();
        let (user, key, node, lease) = (UserId::random(), KeyId::random(), Uuid::new_v4(), Uuid::new_v4());
        m.add_account(user);
        m.apply_entry(user, 1_000, false, "grant");
        let ask = GrantAsk {
            min: MicroCredits(100),
            want: MicroCredits(400),
            account_hour_cap: None,
            key_hour_cap: None,
            key_total_cap: None,
        };
        assert_eq!(m.acquire(lease, user, key, node, &ask).granted, MicroCredits(250));
        assert_eq!(m.apply_entry(user, -900, true, "refund"), Some(100));
        assert_eq!(m.accounts[&user].leased, 0);
        let refused = m.settle(&[Charge {
            usage_id: Uuid::new_v4(),
            user,
            key: Some(key),
            lease: Some(lease),
            amount: 10,
            minute: 0,
        }]);
        assert_eq!(refused[0].outcome, Outcome::Refused);
    }
}
