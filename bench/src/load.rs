//! The load generator: `concurrency` keep-alive HTTP/1.1 connections, each sending requests
//! back to back for a fixed time; latency of each request (or time to first byte) recorded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: Option<String>,
    pub body: Bytes,
    /// Measure time to the first body byte instead of the whole response.
    pub ttfb: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    pub fn percentile(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx]
    }

    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(target: &Target, concurrency: usize, duration: Duration) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let t = target.clone();
        workers.push(tokio::spawn(async move { worker(t, deadline).await }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, err) = w.await??;
        latencies.extend(lat);
        errors += err;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Outcome { requests: latencies.len(), errors, elapsed, latencies_us: latencies })
}

async fn worker(t: Target, deadline: Instant) -> anyhow::Result<(Vec<u32>, usize)> {
    let tcp = tokio::net::TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(100_000);
    let mut errors = 0;
    while Instant::now() < deadline {
        let mut req = Request::post(t.path.as_str()).header("host", "bench").header("content-type", "application/json");
        if let Some(b) = &t.bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let req = req.body(Full::new(t.body.clone()))?;
        sender.ready().await?;
        let start = Instant::now();
        let resp = sender.send_request(req).await?;
        let ok = resp.status().is_success();
        let mut body = resp.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(start.elapsed());
            }
        }
        debug_assert!(body.is_end_stream());
        let took = if t.ttfb { first.unwrap_or_else(|| start.elapsed()) } else { start.elapsed() };
        if ok {
            lat.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
        } else {
            errors += 1;
        }
    }
    Ok((lat, errors))
}
