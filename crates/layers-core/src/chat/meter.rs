//! Metering of one request: however it ends, exactly one usage row is handed to the writer.
//! Invariant: `Meter::finish` consumes the meter, so a request cannot be recorded twice; it
//! never awaits, so it is safe to call from `Drop` when a client disconnects.

use layers_domain::{tokens, MicroCredits, Price, Usage};
use layers_store::UsageRecord;
use tokio::time::Instant;

use crate::usage_writer::UsageSink;

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The upstream finished; charge its usage.
    Completed { usage: Option<Usage>, generated_bytes: usize },
    /// The client went away mid-stream; charge what was generated.
    ClientGone { usage: Option<Usage>, generated_bytes: usize },
    /// The upstream failed; record it, charge nothing.
    Failed { status: u16, code: &'static str, usage: Option<Usage>, generated_bytes: usize },
}

/// What was recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Metered {
    pub usage: Usage,
    pub cost: MicroCredits,
}

#[derive(Debug)]
pub(crate) struct Meter {
    sink: UsageSink,
    row: UsageRecord,
    price: Price,
    billable: bool,
    started: Instant,
    /// Typical prompt size, used when the upstream reports no usage.
    prompt_estimate: u32,
}

/// HTTP's unofficial "client closed request", as nginx logs it.
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl Meter {
    pub(crate) fn new(
        sink: UsageSink,
        row: UsageRecord,
        price: Price,
        billable: bool,
        started: Instant,
        prompt_estimate: u32,
    ) -> Meter {
        Meter { sink, row, price, billable, started, prompt_estimate }
    }

    pub(crate) fn finish(mut self, ending: Ending) -> Metered {
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
        let cost = if self.billable && charge { self.price.cost(&usage) } else { MicroCredits::ZERO };
        self.row.usage = usage;
        self.row.cost = cost;
        self.row.charged = cost;
        self.row.status = status;
        self.row.error_code = code.map(str::to_owned);
        self.row.usage_estimated = estimated;
        self.row.latency_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.sink.record(self.row);
        Metered { usage, cost }
    }
}
