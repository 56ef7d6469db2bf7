//! Metering of one request: however it ends, exactly one usage row is handed to the settlement
//! writer, with the hold settled or released. Invariant: `finish` runs once (it takes the row);
//! it never awaits, so it is safe in `Drop` when a client disconnects.

use layers_domain::{tokens, MicroCredits, Price, Usage};
use layers_store::{Settlement, UsageRecord};
use tokio::time::Instant;

use crate::auth::Principal;
use crate::billing::{Reservation, SettleSink};
use crate::ratelimit::RateLimiter;

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The upstream finished; charge its usage.
    Completed { usage: Option<Usage>, generated_bytes: usize },
    /// The client went away; charge what was generated.
    ClientGone { usage: Option<Usage>, generated_bytes: usize },
    /// The upstream failed; record it, charge nothing.
    Failed { status: u16, code: &'static str, usage: Option<Usage>, generated_bytes: usize },
}

/// What was recorded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Metered {
    pub usage: Usage,
    pub charged: MicroCredits,
    /// Approximately what the account still has (None for unbilled requests).
    pub remaining: Option<MicroCredits>,
}

#[derive(Debug)]
pub(crate) struct Meter {
    sink: SettleSink,
    row: Option<UsageRecord>,
    price: Price,
    started: Instant,
    /// Typical prompt size, used when the upstream reports no usage.
    prompt_estimate: u32,
    /// The request's hold; `None` for requests that are never billed (test keys).
    reservation: Option<Reservation>,
    /// Where the request's tokens count toward a tokens-per-minute limit.
    tokens: Option<(RateLimiter, Principal)>,
}

/// HTTP's unofficial "client closed request", as nginx logs it.
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl Meter {
    pub(crate) fn new(
        sink: SettleSink,
        row: UsageRecord,
        price: Price,
        started: Instant,
        prompt_estimate: u32,
        reservation: Option<Reservation>,
        tokens: Option<(RateLimiter, Principal)>,
    ) -> Meter {
        Meter { sink, row: Some(row), price, started, prompt_estimate, reservation, tokens }
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

    pub(crate) fn finish(&mut self, ending: Ending) -> Metered {
        let Some(mut row) = self.row.take() else { return Metered::default() };
        let (status, code, usage, generated, charge) = match ending {
            Ending::Completed { usage, generated_bytes } => (200, None, usage, generated_bytes, true),
            Ending::ClientGone { usage, generated_bytes } => {
                (CLIENT_CLOSED, Some("client_closed"), usage, generated_bytes, true)
            }
            Ending::Failed { status, code, usage, generated_bytes } => {
                (status, Some(code), usage, generated_bytes, false)
            }
        };
        let estimated = usage.is_none() && (charge || generated > 0);
        let usage = match usage {
            Some(u) => u,
            None if estimated => Usage {
                prompt_tokens: self.prompt_estimate,
                completion_tokens: tokens::estimate_generated(generated),
                ..Usage::default()
            },
            None => Usage::default(),
        };
        row.usage = usage;
        if let Some((limiter, principal)) = &self.tokens {
            limiter.record_tokens(principal, usage.total_tokens());
        }
        row.cost = if self.reservation.is_some() && charge { self.price.cost(&usage) } else { MicroCredits::ZERO };
        row.charged = MicroCredits::ZERO;
        row.status = status;
        row.error_code = code.map(str::to_owned);
        row.usage_estimated = estimated;
        row.latency_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let charge = match self.reservation.take() {
            Some(hold) if charge => Some(hold.settle(row)),
            Some(hold) => Some(hold.release(row)),
            None => {
                self.sink.record_unbilled(Settlement { usage: row, lease_id: None, overage: MicroCredits::ZERO });
                None
            }
        };
        Metered {
            usage,
            charged: charge.map_or(MicroCredits::ZERO, |c| c.charged),
            remaining: charge.map(|c| c.remaining),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Still unfinished: the request was abandoned (the client went away while the upstream
        // worked). What the upstream consumed is charged as estimated.
        if self.row.is_some() {
            self.finish(Ending::ClientGone { usage: None, generated_bytes: 0 });
        }
    }
}
