//! Per-route timeouts and the stream wrapper that enforces them.
//! Invariant: a stream that stalls or overruns ends with a `Timeout` error, never silently.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::error::{ProviderError, TimeoutPhase};
use crate::reply::ChunkStream;

/// Timeouts of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From sending the request to the response headers, and to the first streamed chunk.
    pub first_byte: Duration,
    /// Between two streamed chunks.
    pub idle: Duration,
    /// The whole call.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// The route's timeouts with the first-byte wait cut to what the call's deadline leaves.
pub fn within(timeouts: Timeouts, deadline: Instant) -> Timeouts {
    Timeouts { first_byte: timeouts.first_byte.min(deadline.saturating_duration_since(Instant::now())), ..timeouts }
}

/// Applies the first-chunk, idle and total limits to a stream. After a timeout the stream ends.
pub fn timed(stream: ChunkStream, timeouts: Timeouts, deadline: Instant) -> ChunkStream {
    let state = (stream, true, false);
    Box::pin(futures_util::stream::unfold(state, move |(mut inner, first, done)| async move {
        if done {
            return None;
        }
        let wait = if first { timeouts.first_byte } else { timeouts.idle };
        let limit = (Instant::now() + wait).min(deadline);
        match tokio::time::timeout_at(limit, inner.next()).await {
            Ok(Some(item)) => {
                let stop = item.is_err();
                Some((item, (inner, false, stop)))
            }
            Ok(None) => None,
            Err(_) => {
                let phase = if Instant::now() >= deadline {
                    TimeoutPhase::Total
                } else if first {
                    TimeoutPhase::FirstByte
                } else {
                    TimeoutPhase::Idle
                };
                Some((Err(ProviderError::Timeout(phase)), (inner, false, true)))
            }
        }
    }))
}
