//! Which route answers a request: the model's routes in order, each retried with jittered
//! backoff on failures a retry can fix (connect errors, timeouts, 408/409/429, 5xx, honouring
//! the upstream's `retry-after`), then the next route; routes that keep failing are skipped for
//! a cool-down (circuit breaker). Invariant: nothing is retried once an answer exists — for a
//! stream, once its first chunk arrived, which is before any byte reaches the client — and a
//! request the client got wrong is never retried or sent elsewhere.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use futures_util::StreamExt;
use layers_domain::routing::{Breaker, BreakerPolicy, Pass, RetryPolicy};
use layers_providers::{Adapter, Blame, ChatCall, ChatRequest, ChunkStream, Completion, ProviderError, StreamEvent};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Retry and breaker settings of the deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoutingSettings {
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
}

/// One way to serve a model: a provider and its id for the model.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub provider: String,
    pub upstream_model: String,
    pub adapter: Arc<Adapter>,
}

impl Candidate {
    fn key(&self) -> String {
        format!("{}/{}", self.provider, self.upstream_model)
    }
}

/// What a route answered.
pub(crate) enum Answer {
    Whole(Completion),
    /// A stream whose first chunk has arrived (and is handed over separately).
    Stream(ChunkStream, Map<String, Value>),
}

/// The outcome of routing one request: which candidate answered (or failed last) and how.
pub(crate) struct Served<T> {
    pub index: usize,
    pub result: Result<T, ProviderError>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RoutingStats {
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub fallovers: AtomicU64,
    pub breaker_opened: AtomicU64,
    /// Routes passed over because their breaker was open.
    pub skipped_open: AtomicU64,
}

#[derive(Debug)]
pub struct Router {
    settings: RoutingSettings,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// The gateway's time before calling a provider, per request.
    overhead: crate::histogram::Histogram,
    /// Each provider's time to answer (the whole body, or a stream's first chunk), per attempt.
    upstream: Mutex<std::collections::BTreeMap<String, Arc<crate::histogram::Histogram>>>,
    /// Each route's recent time to answer (to the first chunk of a stream), in ms, smoothed:
    /// what `provider.sort: "latency"` orders by.
    latency: Mutex<HashMap<String, u64>>,
    stats: RoutingStats,
    epoch: Instant,
    clock: Clock,
}

/// What to do after a failed attempt.
enum Next {
    /// The client's mistake: every route would refuse it.
    GiveUp,
    Retry,
    FallOver,
}

fn next_step(err: &ProviderError) -> Next {
    if matches!(err, ProviderError::OverBudget) {
        // This node's memory, not the route: every route would meet the same budget.
        return Next::GiveUp;
    }
    match err.blame() {
        // This route cannot express the request; another route may.
        Blame::Client if matches!(err, ProviderError::Unsupported { .. }) => Next::FallOver,
        Blame::Client => Next::GiveUp,
        _ if err.retryable() => Next::Retry,
        _ => Next::FallOver,
    }
}

impl Router {
    pub fn new(settings: RoutingSettings, clock: Clock) -> Router {
        Router {
            settings,
            breakers: Mutex::new(HashMap::new()),
            latency: Mutex::new(HashMap::new()),
            overhead: Default::default(),
            upstream: Mutex::new(Default::default()),
            stats: RoutingStats::default(),
            epoch: Instant::now(),
            clock,
        }
    }

    pub fn stats(&self) -> &RoutingStats {
        &self.stats
    }

    /// Each route (`provider/upstream-model`) whose breaker is open now.
    pub fn open_routes(&self) -> Vec<String> {
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut open: Vec<String> = breakers.iter().filter(|(_, b)| b.is_open()).map(|(k, _)| k.clone()).collect();
        open.sort();
        open
    }

    pub(crate) fn observe_overhead(&self, d: std::time::Duration) {
        self.overhead.observe(d);
    }

    /// The gateway overhead histogram.
    pub fn overhead(&self) -> crate::histogram::Snapshot {
        self.overhead.snapshot()
    }

    /// Each provider's time-to-answer histogram, by provider name.
    pub fn upstream_latency(&self) -> Vec<(String, crate::histogram::Snapshot)> {
        let map = self.upstream.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, h)| (k.clone(), h.snapshot())).collect()
    }

    fn observe_upstream(&self, provider: &str, d: std::time::Duration) {
        let h = {
            let mut map = self.upstream.lock().unwrap_or_else(|p| p.into_inner());
            // The provider's name is copied only the first time it is seen.
            match map.get(provider) {
                Some(h) => h.clone(),
                None => map.entry(provider.to_owned()).or_default().clone(),
            }
        };
        h.observe(d);
    }

    /// The route's recent time to answer, once it has answered on this node.
    pub(crate) fn latency_ms(&self, c: &Candidate) -> Option<u64> {
        self.latency.lock().unwrap_or_else(|p| p.into_inner()).get(&c.key()).copied()
    }

    /// Folds one answer's time into the route's smoothed latency (new = ¾ old + ¼ this).
    fn record_latency(&self, c: &Candidate, took_ms: u64) {
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let slot = latency.entry(c.key()).or_insert(took_ms);
        *slot = (*slot * 3 + took_ms) / 4;
    }

    fn now_ms(&self) -> u64 {
        self.clock.ms_since(self.epoch)
    }

    fn with_breaker<T>(&self, c: &Candidate, f: impl FnOnce(&mut Breaker, u64) -> T) -> T {
        let now = self.now_ms();
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        f(breakers.entry(c.key()).or_default(), now)
    }

    /// Records an attempt's outcome on its route's breaker; `probe` when the attempt was the
    /// half-open route's probe.
    fn record(&self, c: &Candidate, outcome: Option<&ProviderError>, probe: Option<u64>) {
        match outcome {
            None => self.with_breaker(c, |b, now| b.success(now)),
            // The request's own fault, or this node's: nothing learnt of the route, and a probe
            // is handed to the next call.
            Some(e) if e.blame() == Blame::Client || matches!(e, ProviderError::OverBudget) => {
                if let Some(p) = probe {
                    self.with_breaker(c, |b, _| b.release_probe(p));
                }
            }
            Some(e) => {
                let policy = self.settings.breaker;
                if self.with_breaker(c, |b, now| b.failure(&policy, now, probe)) {
                    self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(route = %c.key(), error = %crate::error::chain(e), "route failing: taken out of rotation for its cool-down");
                }
            }
        }
    }

    /// Whether a route may be tried now: `Ok` with the probe's time when this call is the
    /// half-open route's probe, or `Err` with the milliseconds until it may.
    fn admit(&self, c: &Candidate) -> Result<Option<u64>, u64> {
        let policy = self.settings.breaker;
        let (pass, wait) = self.with_breaker(c, |b, now| (b.admit(&policy, now), b.wait_ms(&policy, now)));
        match pass {
            Pass::No => Err(wait),
            Pass::Yes => Ok(None),
            Pass::Probe { probe_ms } => Ok(Some(probe_ms)),
        }
    }

    /// Waits out the backoff before the next attempt on a route (honouring the provider's
    /// `retry-after`); false when that would pass the deadline.
    async fn back_off(&self, retry: u32, err: &ProviderError, deadline: Instant, gone: &CancellationToken) -> bool {
        let retry_after = match err {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let wait = self.settings.retry.backoff(retry, retry_after, rand::random::<f64>());
        let Some(w) = wait.filter(|w| Instant::now() + *w < deadline) else { return false };
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(w) => {}
            () = gone.cancelled() => {}
        }
        true
    }

    /// Serves a chat request from the first route that can, within `deadline`.
    pub(crate) async fn call(
        &self,
        candidates: &[Candidate],
        request: &ChatRequest,
        request_id: &str,
        model_output_cap: u32,
        deadline: Instant,
        gone: &CancellationToken,
    ) -> Served<Answer> {
        let stream = request.is_stream();
        self.run(candidates, deadline, gone, |i| {
            let c = &candidates[i];
            async move {
                let call =
                    ChatCall { request, upstream_model: &c.upstream_model, request_id, deadline, model_output_cap };
                attempt(&c.adapter, &call, stream).await
            }
        })
        .await
    }

    /// Runs `attempt(i)` on candidate `i`, retrying and falling over as the module says. Once
    /// `gone` fires (the client left), no further attempt starts: an attempt in flight runs to
    /// its end (the provider may bill it), but a retry or a fall-over would only spend money
    /// nobody waits for.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        candidates: &[Candidate],
        deadline: Instant,
        gone: &CancellationToken,
        mut attempt: F,
    ) -> Served<T>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut last: Option<Served<T>> = None;
        let mut soonest_probe_ms = u64::MAX;
        for (index, c) in candidates.iter().enumerate() {
            let mut probe = match self.admit(c) {
                Ok(probe) => probe,
                Err(wait) => {
                    self.stats.skipped_open.fetch_add(1, Ordering::Relaxed);
                    soonest_probe_ms = soonest_probe_ms.min(wait);
                    continue;
                }
            };
            if last.is_some() {
                self.stats.fallovers.fetch_add(1, Ordering::Relaxed);
            }
            let mut retry = 0;
            loop {
                if gone.is_cancelled() {
                    // The client left before this route was tried: a probe it held goes back.
                    if let Some(p) = probe {
                        self.with_breaker(c, |b, _| b.release_probe(p));
                    }
                    return Served { index, result: Err(ProviderError::ClientGone) };
                }
                self.stats.attempts.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let outcome = attempt(index).await;
                self.observe_upstream(&c.provider, began.elapsed());
                let err = match outcome {
                    Ok(answer) => {
                        self.record(c, None, probe);
                        self.record_latency(c, began.elapsed().as_millis() as u64);
                        return Served { index, result: Ok(answer) };
                    }
                    Err(e) => e,
                };
                // Only the first attempt is the probe; a retry is an ordinary call.
                self.record(c, Some(&err), probe.take());
                tracing::info!(route = %c.key(), error = %crate::error::chain(&err), retry, "upstream attempt failed");
                match next_step(&err) {
                    Next::GiveUp => return Served { index, result: Err(err) },
                    Next::Retry if retry + 1 < self.settings.retry.attempts_per_route => {
                        if !self.back_off(retry, &err, deadline, gone).await {
                            last = Some(Served { index, result: Err(err) });
                            break;
                        }
                        retry += 1;
                    }
                    Next::Retry | Next::FallOver => {
                        // A route that cannot express the request does not hide why an earlier
                        // route failed; any other failure is the latest news.
                        let unsupported = matches!(err, ProviderError::Unsupported { .. });
                        if !(unsupported && last.is_some()) {
                            last = Some(Served { index, result: Err(err) });
                        }
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        last.unwrap_or_else(|| Served {
            index: 0,
            result: Err(ProviderError::Unavailable {
                retry_after: Some(std::time::Duration::from_millis(soonest_probe_ms.clamp(1, 60_000))),
            }),
        })
    }
}

/// One attempt on one route. A stream counts as answered once a chunk with output (content,
/// reasoning, a tool call, a finish reason or usage) is in: chunks before it (Anthropic's
/// `message_start`, role-only chunks) are held back, so an overload reported in-stream right
/// after them still falls over, and nothing has reached the client yet.
async fn attempt(adapter: &Adapter, call: &ChatCall<'_>, stream: bool) -> Result<Answer, ProviderError> {
    if !stream {
        return adapter.complete(call).await.map(Answer::Whole);
    }
    let mut chunks = adapter.stream(call).await?;
    let mut held: Vec<StreamEvent> = Vec::new();
    let mut chunks_held = 0;
    loop {
        match chunks.next().await {
            Some(Ok(StreamEvent::Chunk(chunk))) => {
                let output = carries_output(&chunk);
                held.push(StreamEvent::Chunk(chunk));
                chunks_held += 1;
                if output || chunks_held >= MAX_HELD {
                    break;
                }
            }
            // Usage reported before any output (Anthropic's input count) goes along with it.
            Some(Ok(usage @ StreamEvent::Usage(_))) => held.push(usage),
            Some(Err(err)) => return Err(err),
            Some(Ok(StreamEvent::Done)) | None => {
                return Err(ProviderError::Protocol("the stream ended without any content"));
            }
        }
    }
    let at = held.iter().position(|e| matches!(e, StreamEvent::Chunk(_))).unwrap_or(0);
    let StreamEvent::Chunk(first) = held.remove(at) else {
        return Err(ProviderError::Protocol("the stream ended without any content"));
    };
    let rest = futures_util::stream::iter(held.into_iter().map(Ok)).chain(chunks);
    Ok(Answer::Stream(Box::pin(rest), first))
}

/// Chunks held back at most before a stream counts as answered anyway.
const MAX_HELD: usize = 8;

fn carries_output(chunk: &Map<String, Value>) -> bool {
    if chunk.get("usage").is_some_and(|u| !u.is_null()) {
        return true;
    }
    chunk.get("choices").and_then(Value::as_array).into_iter().flatten().any(|c| {
        let d = &c["delta"];
        let text = |k: &str| d.get(k).and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        !c["finish_reason"].is_null()
            || text("content")
            || text("reasoning_content")
            || text("refusal")
            || d.get("tool_calls").is_some()
    })
}
