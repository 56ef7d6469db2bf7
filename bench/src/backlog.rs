//! The settlement backlog after a load: Layers' `layers_settlement_backlog` gauge read from
//! `GET /metrics` as soon as the load stops, then every 50 ms until it reads 0.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::run::http_get;

pub const POLL: Duration = Duration::from_millis(50);
const GIVE_UP: Duration = Duration::from_secs(30);
const GAUGE: &str = "layers_settlement_backlog";

/// What the backlog did after one load.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Settlements unwritten when the load stopped.
    pub at_end: u64,
    /// From the load stopping to the first reading of 0; `None` if it never did within 30 s.
    pub drained_after: Option<Duration>,
    /// The last reading (0 when drained).
    pub left: u64,
}

/// Reads the backlog now, then polls until it is 0 or 30 s have passed since `stopped`.
pub async fn drain(gateway: SocketAddr, stopped: Instant) -> anyhow::Result<Drain> {
    let at_end = read(gateway).await?;
    let mut left = at_end;
    while left > 0 && stopped.elapsed() < GIVE_UP {
        tokio::time::sleep(POLL).await;
        left = read(gateway).await?;
    }
    let drained_after = (left == 0).then(|| stopped.elapsed());
    Ok(Drain { at_end, drained_after, left })
}

async fn read(gateway: SocketAddr) -> anyhow::Result<u64> {
    let (status, body) = http_get(gateway, "/metrics").await?;
    anyhow::ensure!(status == 200, "GET /metrics answered {status}");
    parse(&body).ok_or_else(|| anyhow::anyhow!("GET /metrics has no {GAUGE}"))
}

/// The gauge's value in Prometheus text format (`name value`, no labels).
fn parse(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(GAUGE)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_the_gauge_and_not_its_help() {
        let text = "# HELP layers_settlement_backlog Settlements waiting.\n\
                    # TYPE layers_settlement_backlog gauge\n\
                    layers_settlement_backlog 4711\n\
                    layers_settlement_backlog_other 1\n";
        assert_eq!(parse(text), Some(4711));
        assert_eq!(parse("layers_requests_total 3\n"), None);
    }
}
