//! Metering of one request: however it ends, exactly one usage row is handed to the settlement
//! writer, with the hold settled or released. Invariant: `finish` runs once (it takes the row);
//! it never awaits, so it is safe in `Drop`; a request is charged at least the usage its
//! provider reported, and nothing when no provider answered.

use layers_domain::{tokens, MicroCredits, Price, Usage};
use layers_store::{Settlement, UsageRecord};
use tokio::time::Instant;

use crate::auth::Principal;
use crate::billing::{Reservation, SettleSink};
use crate::codes::ErrorCode;
use crate::ratelimit::RateLimiter;

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The provider finished; charge its usage.
    Completed { usage: Option<Usage>, generated_bytes: usize },
    /// The client went away after a provider answered; charge what the provider produced.
    /// `complete`: the provider finished (its usage is final), as when a stream was drained.
    ClientGone { usage: Option<Usage>, generated_bytes: usize, complete: bool },
    /// The provider failed. Output that reached the client (or usage the provider reported for
    /// output) is charged, since the provider bills it; a failure before any output costs nothing.
    /// `final_usage`: the provider's final usage had arrived (the failure came after it).
    Failed { code: ErrorCode, usage: Option<Usage>, generated_bytes: usize, final_usage: bool },
    /// The client went away before any provider answered: nothing was consumed.
    Abandoned,
}

/// What was recorded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Metered {
    pub usage: Usage,
    /// Exactly what the ledger debits.
    pub charged: MicroCredits,
    /// Approximately what the account still has (None for unbilled requests).
    pub remaining: Option<MicroCredits>,
}

/// What a request's price is made of beyond its tokens.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pricing {
    pub price: Price,
    /// Per-request fees (web search), charged whenever the request is.
    pub fees: MicroCredits,
    /// Typical prompt size, used when the provider reports no usage.
    pub typical_prompt: u32,
    /// The prompt bound the hold covers.
    pub prompt_bound: u32,
    /// Output tokens the hold covers (all choices): an estimate never exceeds it.
    pub held_output: u32,
}

#[derive(Debug)]
pub(crate) struct Meter {
    sink: SettleSink,
    row: Option<UsageRecord>,
    pricing: Pricing,
    started: Instant,
    /// The request's hold; `None` for requests that are never billed (test keys).
    reservation: Option<Reservation>,
    /// Where the request's tokens count toward a tokens-per-minute limit.
    tokens: Option<(RateLimiter, Principal)>,
    /// The request's access-log line, told how it ended.
    access: crate::access::AccessRecord,
}

/// HTTP's unofficial "client closed request", as nginx logs it.
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl Meter {
    pub(crate) fn new(
        sink: SettleSink,
        row: UsageRecord,
        pricing: Pricing,
        started: Instant,
        reservation: Option<Reservation>,
        tokens: Option<(RateLimiter, Principal)>,
    ) -> Meter {
        Meter { sink, row: Some(row), pricing, started, reservation, tokens, access: Default::default() }
    }

    pub(crate) fn with_access(mut self, access: crate::access::AccessRecord) -> Meter {
        self.access = access;
        self
    }

    /// The gateway's time before the provider was called, for the access log.
    pub(crate) fn overhead(&self, d: std::time::Duration) {
        self.access.overhead(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The route that answered (or failed last), for the usage row.
    pub(crate) fn served_by(&mut self, provider: &str, upstream_model: &str) {
        if let Some(row) = &mut self.row {
            if row.provider != provider || row.upstream_model != upstream_model {
                row.provider = provider.to_owned();
                row.upstream_model = upstream_model.to_owned();
            }
        }
    }

    /// The image price the answer says applies (its quality and size), for image requests.
    pub(crate) fn set_image_price(&mut self, per_image: MicroCredits) {
        self.pricing.price.per_image = per_image;
    }

    pub(crate) fn finish(&mut self, ending: Ending) -> Metered {
        let Some(mut row) = self.row.take() else { return Metered::default() };
        let (status, code, usage, generated, charge, complete) = match ending {
            Ending::Completed { usage, generated_bytes } => (200, None, usage, generated_bytes, true, true),
            Ending::ClientGone { usage, generated_bytes, complete } => {
                (CLIENT_CLOSED, Some(ErrorCode::ClientClosed), usage, generated_bytes, true, complete)
            }
            Ending::Failed { code, usage, generated_bytes, final_usage } => {
                let produced = generated_bytes > 0 || usage.is_some_and(|u| u.completion_tokens > 0);
                (code.status(), Some(code), usage, generated_bytes, produced, final_usage)
            }
            Ending::Abandoned => (CLIENT_CLOSED, Some(ErrorCode::ClientClosed), None, 0, false, false),
        };
        let (usage, estimated) = self.usage_of(usage, generated, charge, complete);
        row.usage = usage;
        if let Some((limiter, principal)) = &self.tokens {
            limiter.record_tokens(principal, usage.total_tokens());
        }
        let rates = self.pricing.price.rates_for(usage.prompt_tokens);
        row.rates = rates;
        let billed = self.reservation.is_some() && charge;
        row.fees = if billed { self.pricing.fees } else { MicroCredits::ZERO };
        row.cost = if billed { rates.cost(&usage).saturating_add(row.fees) } else { MicroCredits::ZERO };
        row.charged = MicroCredits::ZERO;
        row.status = status;
        row.error_code = code.map(|c| c.as_str().to_owned());
        row.usage_estimated = estimated;
        row.latency_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (model, provider) = (row.model.clone(), row.provider.clone());
        let charge = match self.reservation.take() {
            Some(hold) if billed => Some(hold.settle(row)),
            Some(hold) => Some(hold.release(row)),
            None => {
                self.sink.record_unbilled(Settlement { usage: row, lease_id: None });
                None
            }
        };
        let charged = charge.map_or(MicroCredits::ZERO, |c| c.charged);
        self.access.outcome(&model, &provider, usage, charged);
        Metered { usage, charged, remaining: charge.map(|c| c.remaining) }
    }

    /// The usage to bill: what the provider reported (final when `complete`), raised to what
    /// visibly reached the client when the report is partial; estimated (within what the hold
    /// covers) when there is none.
    fn usage_of(&self, reported: Option<Usage>, generated: usize, charge: bool, complete: bool) -> (Usage, bool) {
        let seen = tokens::estimate_generated(generated).min(self.pricing.held_output);
        match reported {
            Some(u) if complete || u.completion_tokens >= seen => (u, false),
            // A stream cut after output the provider had not counted yet: the delivered output.
            Some(u) => (Usage { completion_tokens: seen, ..u }, true),
            None if charge => {
                let prompt = self.pricing.typical_prompt.min(self.pricing.prompt_bound);
                (Usage { prompt_tokens: prompt, completion_tokens: seen, ..Usage::default() }, true)
            }
            None => (Usage::default(), false),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Still unfinished: the request's work was dropped before any ending (a bug or a
        // runtime going away). Record it without a charge rather than leak the hold.
        if self.row.is_some() {
            self.finish(Ending::Abandoned);
        }
    }
}
