//! What both backends share when applying the credit rules of layers-domain: a settlement as a
//! domain `Charge`, a lease request as a `GrantAsk`, and the usage row as it is written once
//! its charge is decided. Invariant: a refused charge is recorded as a shortfall, never lost.

use layers_domain::credit::ledger::{Charge, Decision, Outcome};
use layers_domain::credit::GrantAsk;
use layers_domain::MicroCredits;

use crate::records::{LeaseRequest, SettleOutcome, SettleResult, Settlement, UsageRecord};

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
