//! The Markdown report of one run: the three targets side by side per scenario, the ratios
//! SPEC §11 sets its targets in, the settlement backlog after each load, and Layers' life cycle.

use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use crate::backlog::{Drain, POLL};
use crate::busy::cpus;
use crate::haproxy::Haproxy;
use crate::load::Outcome;
use crate::run::{Deployment, Measured, CHAT_C1, CHAT_C64, STREAM_C64, TTFB_C1};

/// SPEC §11: the settlement backlog is 0 within this long of the load stopping.
const DRAIN_TARGET: Duration = Duration::from_secs(2);

/// Layers' start-up, memory and shutdown.
pub struct Lifecycle {
    pub startup: Duration,
    pub rss_idle: u64,
    pub rss_after: u64,
    pub rss_peak: u64,
    pub shutdown: Duration,
    pub clean_exit: bool,
}

pub struct Report<'a> {
    pub seconds: u64,
    pub haproxy: &'a Haproxy,
    pub deployment: &'a Deployment,
    pub measured: &'a [Measured],
    pub life: Lifecycle,
}

impl Display for Report<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.intro(f)?;
        self.outcomes(f)?;
        self.against_spec(f)?;
        self.backlog(f)?;
        self.lifecycle(f)
    }
}

impl Report<'_> {
    fn intro(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Each scenario ran {} s against the mock directly, then through haproxy (`nbthread {}`, \
             keep-alive, `http-reuse always`), then through Layers; the c=1 scenarios with a `nice -n 19` \
             busy loop on each of the {} CPUs.\n",
            self.seconds,
            self.haproxy.threads,
            cpus()
        )
    }

    fn outcomes(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "| scenario | target | requests/s | p50 µs | p99 µs | errors |\n|---|---|---:|---:|---:|---:|")?;
        for m in self.measured {
            let name = m.scenario.name;
            for (target, o) in
                [("direct to mock", &m.direct), ("through haproxy", &m.haproxy), ("through Layers", &m.layers)]
            {
                writeln!(
                    f,
                    "| {name} | {target} | {:.0} | {} | {} | {} |",
                    o.rps(),
                    o.percentile(0.50),
                    o.percentile(0.99),
                    o.errors
                )?;
            }
            let (p50, p99) = (added(&m.haproxy, &m.direct, 0.50), added(&m.haproxy, &m.direct, 0.99));
            writeln!(f, "| {name} | added by haproxy | | {p50} | {p99} | |")?;
            let (p50, p99) = (added(&m.layers, &m.direct, 0.50), added(&m.layers, &m.direct, 0.99));
            writeln!(f, "| {name} | **added by Layers** | | **{p50}** | **{p99}** | |")?;
        }
        writeln!(f)
    }

    fn against_spec(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "Against SPEC §11 (ratios to haproxy in this run):\n")?;
        writeln!(f, "| target | measured | |\n| --- | --- | --- |")?;
        let min_ratio = match self.deployment {
            Deployment::Embedded => 0.5,
            Deployment::Production { .. } => 0.35,
        };
        for name in [CHAT_C64, STREAM_C64] {
            if let Some(m) = self.get(name) {
                throughput_row(f, name, m, min_ratio)?;
            }
        }
        if let Some(m) = self.get(CHAT_C1) {
            added_row(f, "added p50, chat c=1", m, 0.50)?;
            let p99 = added(&m.layers, &m.direct, 0.99);
            row(f, "added p99, chat c=1: ≤ 500 µs", &format!("{p99} µs"), p99 <= 500)?;
        }
        if let Some(m) = self.get(TTFB_C1) {
            added_row(f, "added time to first byte p50, stream c=1", m, 0.50)?;
        }
        if let Some((name, d)) = self.worst_drain() {
            let within = d.drained_after.is_some_and(|t| t <= DRAIN_TARGET);
            row(f, "settlement backlog 0 within 2 s of the load stopping", &format!("{} ({name})", drain(&d)), within)?;
        }
        let life = &self.life;
        row(f, "RSS idle ≤ 30 MB", &mb(life.rss_idle), life.rss_idle <= 30 * 1024)?;
        row(f, "RSS under load ≤ 100 MB", &format!("{} peak", mb(life.rss_peak)), life.rss_peak <= 100 * 1024)?;
        row(f, "start-up ≤ 1 s", &format!("{} ms", life.startup.as_millis()), life.startup <= Duration::from_secs(1))?;
        writeln!(f)
    }

    fn backlog(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Settlement backlog (`layers_settlement_backlog` from `GET /metrics` as soon as the load \
             through Layers stopped, then every 50 ms):\n"
        )?;
        writeln!(f, "| scenario | backlog at end of load | drained to 0 after |\n|---|---:|---:|")?;
        for m in self.measured {
            writeln!(f, "| {} | {} | {} |", m.scenario.name, m.drain.at_end, drained_after(&m.drain))?;
        }
        if let Some((name, d)) = self.worst_drain() {
            writeln!(f, "\nSettlement ({name}, the slowest to drain): {}.", drain(&d))?;
        }
        Ok(())
    }

    fn lifecycle(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let life = &self.life;
        writeln!(
            f,
            "\nLayers: start-up to healthy {} ms; RSS idle {}, after load {}, peak {}; graceful shutdown {} ms ({}).",
            life.startup.as_millis(),
            mb(life.rss_idle),
            mb(life.rss_after),
            mb(life.rss_peak),
            life.shutdown.as_millis(),
            if life.clean_exit { "exit 0" } else { "FAILED" }
        )
    }

    fn get(&self, name: &str) -> Option<&Measured> {
        self.measured.iter().find(|m| m.scenario.name == name)
    }

    /// The scenario whose backlog took longest to drain (never drained counts as longest; on
    /// as many polls, the larger backlog).
    fn worst_drain(&self) -> Option<(&'static str, Drain)> {
        self.measured
            .iter()
            .max_by_key(|m| {
                let d = m.drain;
                (d.drained_after.is_none(), d.drained_after.map(|t| t.as_millis() / POLL.as_millis()), d.at_end)
            })
            .map(|m| (m.scenario.name, m.drain))
    }
}

/// Layers' throughput against haproxy's in one scenario.
fn throughput_row(f: &mut Formatter<'_>, name: &str, m: &Measured, min_ratio: f64) -> fmt::Result {
    let ratio = m.layers.rps() / m.haproxy.rps();
    let measured = format!("{ratio:.2} ({:.0} / {:.0} requests/s)", m.layers.rps(), m.haproxy.rps());
    row(f, &format!("throughput, {name}: Layers / haproxy ≥ {min_ratio:.2}"), &measured, ratio >= min_ratio)
}

/// What Layers adds beyond what haproxy adds, at percentile `p`: at most 50 µs.
fn added_row(f: &mut Formatter<'_>, what: &str, m: &Measured, p: f64) -> fmt::Result {
    let (layers, haproxy) = (added(&m.layers, &m.direct, p), added(&m.haproxy, &m.direct, p));
    let beyond = layers - haproxy;
    let measured = format!("{beyond} µs (Layers {layers} − haproxy {haproxy})");
    row(f, &format!("{what}: Layers − haproxy ≤ 50 µs"), &measured, beyond <= 50)
}

fn row(f: &mut Formatter<'_>, target: &str, measured: &str, met: bool) -> fmt::Result {
    writeln!(f, "| {target} | {measured} | {} |", if met { "met" } else { "**not met**" })
}

/// Microseconds `o` takes beyond `base` at percentile `p` (negative when faster).
fn added(o: &Outcome, base: &Outcome, p: f64) -> i64 {
    i64::from(o.percentile(p)) - i64::from(base.percentile(p))
}

fn drain(d: &Drain) -> String {
    match d.drained_after {
        Some(t) => format!("backlog at end of load: {}; drained to 0 after {} ms", d.at_end, t.as_millis()),
        None => format!("backlog at end of load: {}; still {} after 30 s", d.at_end, d.left),
    }
}

fn drained_after(d: &Drain) -> String {
    match d.drained_after {
        Some(t) => format!("{} ms", t.as_millis()),
        None => format!("not after 30 s ({} left)", d.left),
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
