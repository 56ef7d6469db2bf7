//! How much credit the database grants a node for one key: at least what the request lacks, at
//! most what it wants, within the balance less every lease and within every spend cap, and at
//! most a quarter of the room left so one busy node or key cannot take it all. Invariant: the
//! sum of active leases never exceeds the balance, nor any cap's room.

use crate::money::MicroCredits;

/// The lease a node asks more credit on, as the database has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThisLease {
    /// Not created yet: the grant creates it.
    New,
    Active {
        amount: i64,
    },
    /// Released or reaped: nothing more may be granted on it (the node starts a new one).
    Ended,
}

/// What the database knows about the account when a lease is asked for, read under the
/// balance row's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub balance: i64,
    /// Sum of every active lease of the account (all keys, all nodes).
    pub leased: i64,
    pub this_lease: ThisLease,
    /// Sum of the active leases of this key (all nodes).
    pub key_leased: i64,
    /// Spend in the rolling hour: the account's, and this key's.
    pub account_hour_spent: i64,
    pub key_hour_spent: i64,
    /// What the key has spent in its lifetime.
    pub key_spent: i64,
    /// Credit in the account's other leases that has not answered the latest reclaim.
    pub others_unanswered: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantAsk {
    /// Grant nothing unless at least this much can be granted.
    pub min: MicroCredits,
    pub want: MicroCredits,
    pub account_hour_cap: Option<MicroCredits>,
    pub key_hour_cap: Option<MicroCredits>,
    pub key_total_cap: Option<MicroCredits>,
}

/// What was granted, and the room each limit left before the grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantDecision {
    pub granted: MicroCredits,
    pub balance: MicroCredits,
    /// Balance less every lease.
    pub available: MicroCredits,
    pub account_hour_room: Option<MicroCredits>,
    pub key_hour_room: Option<MicroCredits>,
    pub key_total_room: Option<MicroCredits>,
    /// The lease had ended; nothing was granted on it.
    pub lease_ended: bool,
    /// Credit leased to the account's other leases (other keys, other nodes).
    pub others: MicroCredits,
    /// Of that, credit whose lease has not yet answered the latest reclaim.
    pub others_unanswered: MicroCredits,
}

impl GrantDecision {
    /// The most the database could still grant, by the tightest limit.
    pub fn room(&self) -> MicroCredits {
        [Some(self.available), self.account_hour_room, self.key_hour_room, self.key_total_room]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(MicroCredits::ZERO)
            .max(MicroCredits::ZERO)
    }

    /// Whether `need` could be covered if the account's other leases gave back their free
    /// credit: the balance covers it, only leases stand in the way, and the caps allow it.
    pub fn stranded(&self, need: MicroCredits) -> bool {
        // Other leases count against the caps too: returned, their credit is room again.
        let caps_allow = [self.account_hour_room, self.key_hour_room, self.key_total_room]
            .into_iter()
            .flatten()
            .all(|room| room.0 + self.others.0 >= need.0);
        self.others.is_positive() && self.available.0 + self.others.0 >= need.0 && caps_allow
    }
}

/// The grant for `ask` on an account in the state `v`.
pub fn decide_grant(v: &LeaseView, ask: &GrantAsk) -> GrantDecision {
    let available = (v.balance - v.leased).max(0);
    let room = |cap: Option<MicroCredits>, used: i64| cap.map(|c| MicroCredits((c.0 - used).max(0)));
    let account_hour_room = room(ask.account_hour_cap, v.leased + v.account_hour_spent);
    let key_hour_room = room(ask.key_hour_cap, v.key_leased + v.key_hour_spent);
    let key_total_room = room(ask.key_total_cap, v.key_leased + v.key_spent);
    let this_amount = match v.this_lease {
        ThisLease::Active { amount } => amount,
        ThisLease::New | ThisLease::Ended => 0,
    };
    let mut d = GrantDecision {
        granted: MicroCredits::ZERO,
        balance: MicroCredits(v.balance),
        available: MicroCredits(available),
        account_hour_room,
        key_hour_room,
        key_total_room,
        lease_ended: v.this_lease == ThisLease::Ended,
        others: MicroCredits((v.leased - this_amount).max(0)),
        others_unanswered: MicroCredits(v.others_unanswered.max(0)),
    };
    let limit = d.room().0;
    if d.lease_ended || limit <= 0 || limit < ask.min.0 {
        return d;
    }
    d.granted = MicroCredits(ask.want.0.min(ask.min.0.max(limit / 4)).max(ask.min.0).min(limit));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(balance: i64, leased: i64) -> LeaseView {
        LeaseView {
            balance,
            leased,
            this_lease: ThisLease::New,
            key_leased: 0,
            account_hour_spent: 0,
            key_hour_spent: 0,
            key_spent: 0,
            others_unanswered: 0,
        }
    }

    fn ask(min: i64, want: i64) -> GrantAsk {
        GrantAsk {
            min: MicroCredits(min),
            want: MicroCredits(want),
            account_hour_cap: None,
            key_hour_cap: None,
            key_total_cap: None,
        }
    }

    #[test]
    fn grants_within_the_balance_less_every_lease() {
        let d = decide_grant(&view(1_000, 0), &ask(10, 400));
        assert_eq!(d.granted, MicroCredits(250), "a quarter of the room");
        let d = decide_grant(&view(1_000, 900), &ask(10, 400));
        assert_eq!((d.granted, d.available, d.others), (MicroCredits(25), MicroCredits(100), MicroCredits(900)));
        let d = decide_grant(&view(1_000, 995), &ask(10, 400));
        assert_eq!(d.granted, MicroCredits::ZERO);
        assert!(d.stranded(MicroCredits(10)), "other leases hold what the request lacks");
        assert!(!d.stranded(MicroCredits(1_001)));
    }

    #[test]
    fn caps_bound_the_grant_and_an_ended_lease_gets_nothing() {
        let mut a = ask(10, 400);
        a.account_hour_cap = Some(MicroCredits(100));
        let mut v = view(10_000, 0);
        v.account_hour_spent = 60;
        assert_eq!(decide_grant(&v, &a).granted, MicroCredits(10), "room 40: max(min, 40/4)");
        a.key_total_cap = Some(MicroCredits(5));
        assert_eq!(decide_grant(&v, &a).granted, MicroCredits::ZERO);
        let mut ended = view(10_000, 0);
        ended.this_lease = ThisLease::Ended;
        let d = decide_grant(&ended, &ask(1, 1));
        assert!(d.lease_ended && d.granted == MicroCredits::ZERO);
    }
}
