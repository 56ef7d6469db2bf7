//! What both backends share when applying the credit rules of layers-domain: a settlement as a
//! domain `Charge`, a lease request as a `GrantAsk`, and the usage row as it is written once
//! its charge is decided. Invariant: a refused charge is recorded as a shortfall, never lost.

use layers_domain::credit::ledger::{self, Charge, Decision, EntryDecision, Outcome};
use layers_domain::credit::GrantAsk;
use layers_domain::MicroCredits;

use crate::error::StoreError;
use crate::records::{
    LeaseRequest, LedgerOutcome, NewTransaction, SettleOutcome, SettleResult, Settlement, UsageRecord,
};

/// A ledger entry on a balance of `balance` with `leased` out of it: `Ok((balance after,
/// whether the account's leases end))`, or the outcome to return without writing.
pub(crate) fn entry(t: &NewTransaction, balance: i64, leased: i64) -> Result<(MicroCredits, bool), EntryRefused> {
    match ledger::apply_entry(balance, leased, t.amount.0, t.allow_negative) {
        EntryDecision::Apply { balance_after, revoke_leases } => Ok((MicroCredits(balance_after), revoke_leases)),
        EntryDecision::Insufficient { available } => {
            Err(EntryRefused::Outcome(LedgerOutcome::Insufficient { balance: MicroCredits(available) }))
        }
        EntryDecision::Overflow => Err(EntryRefused::Error(StoreError::Corrupt { column: "balance_micros" })),
    }
}

/// Why an entry is not written.
pub(crate) enum EntryRefused {
    Outcome(LedgerOutcome),
    Error(StoreError),
}

/// The rates a usage row was charged at, from its five integer columns.
pub(crate) fn rates(input: i64, output: i64, cached: i64, cache_write: i64, image: i64) -> layers_domain::Rates {
    use layers_domain::Rate;
    layers_domain::Rates {
        input: Rate::from_micros_per_mtok(input),
        output: Rate::from_micros_per_mtok(output),
        cached_input: Rate::from_micros_per_mtok(cached),
        cache_write_input: Rate::from_micros_per_mtok(cache_write),
        per_image: MicroCredits(image),
    }
}

pub(crate) fn charge_of(s: &Settlement) -> Charge {
    Charge {
        usage_id: s.usage.id,
        user: s.usage.user_id,
        key: s.usage.key_id,
        lease: s.lease_id,
        amount: s.usage.charged.0,
        minute: s.usage.created_at.unix_timestamp().div_euclid(60),
    }
}

pub(crate) fn grant_ask(req: &LeaseRequest) -> GrantAsk {
    GrantAsk {
        min: req.min,
        want: req.want,
        account_hour_cap: req.account_hour_cap,
        key_hour_cap: req.key_hour_cap,
        key_total_cap: req.key_total_cap,
    }
}

pub(crate) fn result(s: &Settlement, d: &Decision) -> SettleResult {
    SettleResult {
        usage_id: s.usage.id,
        outcome: match d.outcome {
            Outcome::Applied => SettleOutcome::Applied,
            Outcome::Duplicate => SettleOutcome::Duplicate,
            Outcome::Refused => SettleOutcome::Refused,
        },
        charged: MicroCredits(d.charged),
        balance_after: d.balance_after.map(MicroCredits),
    }
}

/// The usage row to write for a decided settlement (`None` for a duplicate): charged what was
/// decided, with a refused charge added to its shortfall.
pub(crate) fn row_to_write(s: &Settlement, d: &Decision) -> Option<UsageRecord> {
    if d.outcome == Outcome::Duplicate {
        return None;
    }
    let mut row = s.usage.clone();
    if d.outcome == Outcome::Refused {
        row.shortfall = row.shortfall.saturating_add(row.charged);
    }
    row.charged = MicroCredits(d.charged);
    Some(row)
}
