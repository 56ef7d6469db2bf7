//! Credit reservation rules: what a request may cost, how much a node may hold for an account,
//! and how a hold settles. Pure arithmetic; the engine in `layers-core` adds concurrency and
//! storage. Invariant: for every account book, `held + unflushed <= lease`, and a settlement
//! never charges more than the lease can cover — so usage can never drive a balance below zero.

use crate::money::{MicroCredits, Price};
use crate::tier::Tier;
use crate::usage::Usage;

/// Spend caps of one account or key, in micro-credits (`None`: no cap at this level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub per_request: Option<MicroCredits>,
    pub per_hour: Option<MicroCredits>,
}

/// Caps per tier, from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierCaps {
    pub free: Caps,
    pub starter: Caps,
    pub pro: Caps,
    pub team: Caps,
}

/// The caps that apply to one request, after tier defaults and overrides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EffectiveCaps {
    /// Largest estimate one request may have.
    pub per_request: Option<MicroCredits>,
    /// Rolling-hour spend of the whole account.
    pub account_per_hour: Option<MicroCredits>,
    /// Rolling-hour spend of this key, when the key has its own cap.
    pub key_per_hour: Option<MicroCredits>,
    /// Lifetime spend of this key, when the key has a spend limit.
    pub key_total: Option<MicroCredits>,
}

/// Defaults of the security guide: US$1.00 per request, US$10.00 per hour.
pub const DEFAULT_PER_REQUEST: MicroCredits = MicroCredits(100 * crate::money::MICROS_PER_CREDIT);
pub const DEFAULT_PER_HOUR: MicroCredits = MicroCredits(1_000 * crate::money::MICROS_PER_CREDIT);

impl Default for TierCaps {
    fn default() -> Self {
        let caps = Caps { per_request: Some(DEFAULT_PER_REQUEST), per_hour: Some(DEFAULT_PER_HOUR) };
        TierCaps { free: caps, starter: caps, pro: caps, team: caps }
    }
}

impl TierCaps {
    pub fn for_tier(&self, tier: Tier) -> Caps {
        match tier {
            Tier::Free => self.free,
            Tier::Starter => self.starter,
            Tier::Pro => self.pro,
            Tier::Team => self.team,
        }
    }
}

impl EffectiveCaps {
    /// Key overrides win over account overrides, which win over the tier's defaults; the
    /// account's hourly cap always applies to the account's total spend as well.
    pub fn resolve(tier: Caps, account: Caps, key: Caps, key_total: Option<MicroCredits>) -> EffectiveCaps {
        let account_per_request = account.per_request.or(tier.per_request);
        EffectiveCaps {
            per_request: key.per_request.or(account_per_request),
            account_per_hour: account.per_hour.or(tier.per_hour),
            key_per_hour: key.per_hour,
            key_total,
        }
    }
}

/// Upper bound of what a request can cost: its prompt estimate plus `max_output` tokens, the
/// prompt at the dearest of its rates (plain, cache write, cache read), since the provider
/// decides which applies.
pub fn estimate(price: &Price, prompt_tokens: u32, max_output: u32) -> MicroCredits {
    let usage = Usage { prompt_tokens, completion_tokens: max_output, ..Usage::default() };
    let plain = price.cost(&usage);
    let written = price.cost(&Usage { cache_write_tokens: prompt_tokens, ..usage });
    let read = price.cost(&Usage { cached_tokens: prompt_tokens, ..usage });
    plain.max(written).max(read)
}

/// The most output tokens `budget` covers after the prompt, or `None` if not even the prompt.
pub fn affordable_output(price: &Price, prompt_tokens: u32, budget: MicroCredits, max_output: u32) -> Option<u32> {
    let prompt = estimate(price, prompt_tokens, 0);
    if prompt > budget {
        return None;
    }
    if price.output.micros_per_mtok() == 0 {
        return Some(max_output);
    }
    // Largest n with estimate(prompt, n) <= budget; binary search keeps the rounding exact.
    let (mut lo, mut hi) = (0u32, max_output);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if estimate(price, prompt_tokens, mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// One node's book for one key: credit leased from the database and what is held or spent
/// against it in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseBook {
    /// Credit this node holds from the database for the key, not yet debited there.
    pub lease: i64,
    /// Sum of open holds.
    pub held: i64,
    /// Charges settled here but not yet written to the ledger (still inside `lease`).
    pub unflushed: i64,
}

/// The outcome of settling one hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// What the request is charged (≤ its cost).
    pub charged: MicroCredits,
    /// Cost the lease could not cover (recorded, never charged).
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

    /// Ends a hold of `held` with an actual cost of `cost`. The charge is capped at what the
    /// lease can cover once this hold is released; the rest is shortfall.
    pub fn settle(&mut self, held: MicroCredits, cost: MicroCredits) -> Settled {
        self.held = (self.held - held.0).max(0);
        let cost = cost.0.max(0);
        let charged = cost.min(self.free().max(0));
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

#[cfg(test)]
#[path = "credit_tests.rs"]
mod tests;
