//! The money rules of SPEC §4.2, in one place: what a request may cost (caps, estimates), how a
//! node holds and settles against credit it leased (`book`), how much the database grants
//! (`grant`), and how a batch of settlements moves the ledger (`ledger`). Pure arithmetic: the
//! engine in `layers-core` adds concurrency, and both stores call these same functions (or, for
//! PostgreSQL's batch writer, mirror them; a property test compares them with `ledger::Model`).
//! Invariant: a charge is drawn only from a live lease, and a lease only from the balance less
//! every other lease, so usage can never drive a balance below zero.

mod book;
mod grant;
pub mod ledger;

pub use book::{LeaseBook, Settled};
pub use grant::{decide_grant, GrantAsk, GrantDecision, LeaseView, ThisLease};

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
    /// Spend of this key, when the key has a spend limit: over its lifetime, or from
    /// `key_total_from_day` on for a calendar limit.
    pub key_total: Option<MicroCredits>,
    /// The first Unix day (UTC) of the key limit's current calendar period.
    pub key_total_from_day: Option<i64>,
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
            key_total_from_day: None,
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

#[cfg(test)]
mod tests;
