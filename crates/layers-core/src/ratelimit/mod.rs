//! Rate limits per key by the account's tier (SPEC §5): requests per minute, and optionally
//! tokens per minute. With Redis the limit is global across nodes (one atomic script per request);
//! without it, or while it is down, each node limits on its own. Invariant: a request is counted
//! once, in exactly one place, before it reaches a provider.

mod batch;
mod local;
mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::ratelimit::{Decision, Limit};
use layers_domain::{KeyEnv, KeyId, Tier};
use tokio::time::Instant;

use self::batch::{Batches, SlotLease, LEASE_MS};
use self::local::Local;
use self::redis::{Global, Verdict};
use crate::audit::Audit;
use crate::auth::Principal;
use crate::clock::Clock;
use crate::redis_conn::Redis;
use crate::tasks::Tasks;

/// One tier's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierRate {
    pub requests_per_minute: u32,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct RateSettings {
    pub free: TierRate,
    pub starter: TierRate,
    pub pro: TierRate,
    pub team: TierRate,
    /// Test keys have this limit of their own, whatever the account's tier: they reach the
    /// sandbox (which costs nothing) unless an operator allows more, and a client library's
    /// whole test suite must run on one (SPEC §3.1; issue 17).
    pub test_key_requests_per_minute: u32,
    /// The window the per-minute limits apply to (60 s; shorter only to test).
    pub window: Duration,
}

impl Default for RateSettings {
    fn default() -> Self {
        let tier = |rpm| TierRate { requests_per_minute: rpm, tokens_per_minute: None };
        RateSettings {
            free: tier(10),
            starter: tier(60),
            pro: tier(300),
            team: tier(1_000),
            test_key_requests_per_minute: 300,
            window: Duration::from_secs(60),
        }
    }
}

impl RateSettings {
    /// Requests per minute of a tier.
    pub fn for_tier(&self, tier: Tier) -> u32 {
        self.tier(tier).requests_per_minute
    }

    fn tier(&self, tier: Tier) -> TierRate {
        match tier {
            Tier::Free => self.free,
            Tier::Starter => self.starter,
            Tier::Pro => self.pro,
            Tier::Team => self.team,
        }
    }
}

/// The token limit's state for the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenState {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Requests,
    Tokens,
}

/// The verdict on one request, with everything its response headers show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub requests: Decision,
    pub tokens: Option<TokenState>,
    pub refused: Option<Refusal>,
    /// When refused: until a retry can succeed.
    pub retry_after_ms: u64,
    pub window_ms: u64,
}

impl Admission {
    pub fn allowed(&self) -> bool {
        self.refused.is_none()
    }
}

#[derive(Debug, Default)]
pub struct RateStats {
    pub rejections: AtomicU64,
    pub token_rejections: AtomicU64,
    pub local_decisions: AtomicU64,
    /// Admissions from a batch of slots this node held (no Redis round trip).
    pub batched: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: RateSettings,
    local: Local,
    global: Option<Global>,
    batches: Batches,
    epoch: Instant,
    clock: Clock,
    stats: RateStats,
    audit: Audit,
    tasks: Tasks,
}

impl RateLimiter {
    /// The requests a minute `p` may make.
    pub fn requests_per_minute(&self, p: &Principal) -> u32 {
        self.inner.requests_limit(p)
    }

    pub fn new(
        settings: RateSettings,
        redis: Option<Redis>,
        audit: Audit,
        tasks: &Tasks,
        clock: &Clock,
    ) -> RateLimiter {
        let inner = Arc::new(Inner {
            global: redis.map(Global::new),
            settings,
            local: Local::default(),
            batches: Batches::default(),
            epoch: Instant::now(),
            clock: clock.clone(),
            stats: RateStats::default(),
            audit,
            tasks: tasks.clone(),
        });
        let weak = Arc::downgrade(&inner);
        let cancel = tasks.cancelled();
        tasks.spawn("rate-limit-prune", async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                inner.local.prune(inner.now_ms(), inner.window_ms());
            }
        });
        if inner.global.is_some() {
            spawn_batch_returns(&inner, tasks);
        }
        RateLimiter { inner }
    }

    pub fn stats(&self) -> &RateStats {
        &self.inner.stats
    }

    /// Counts the request and decides. With Redis up, Redis decides for the deployment and this
    /// node's own log must agree too: it holds every admission this node made, so the requests
    /// it admitted alone while Redis was away still count when Redis returns.
    pub async fn admit(&self, p: &Principal) -> Admission {
        let inner = &self.inner;
        let limit = Limit { requests: inner.requests_limit(p), window_ms: inner.window_ms() };
        let tpm = inner.tokens_limit(p);
        let mut admission = match inner.global_verdict(p.key_id, limit, tpm).await {
            Some(Ok(batched)) => batched,
            Some(Err(global)) => inner.with_local_agreement(p.key_id, limit, tpm, global),
            None => {
                inner.stats.local_decisions.fetch_add(1, Ordering::Relaxed);
                inner.local_admission(p.key_id, limit, tpm)
            }
        };
        if let Some(t) = admission.tokens.as_mut() {
            t.reset_ms =
                if admission.refused == Some(Refusal::Tokens) { admission.retry_after_ms } else { limit.window_ms };
        }
        match admission.refused {
            Some(Refusal::Requests) => {
                inner.stats.rejections.fetch_add(1, Ordering::Relaxed);
                inner.audit_refusal(p, "requests", u64::from(limit.requests));
            }
            Some(Refusal::Tokens) => {
                inner.stats.token_rejections.fetch_add(1, Ordering::Relaxed);
                inner.audit_refusal(p, "tokens", tpm.unwrap_or(0));
            }
            None => {}
        }
        admission
    }

    /// Adds a finished request's tokens to its key's window (only where a token limit applies).
    /// Never awaits.
    pub fn record_tokens(&self, p: &Principal, tokens: u64) {
        let inner = &self.inner;
        if inner.tokens_limit(p).is_none() || tokens == 0 {
            return;
        }
        inner.local.add_tokens(p.key_id, inner.now_ms(), tokens);
        if inner.global.as_ref().is_some_and(Global::is_up) {
            let this = self.inner.clone();
            let key = p.key_id;
            inner.tasks.spawn("record-tokens", async move {
                if let Some(g) = &this.global {
                    let _ = g.add_tokens(key, tokens, this.window_ms().div_ceil(1_000)).await;
                }
            });
        }
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.clock.ms_since(self.epoch)
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.settings.window.as_millis()).unwrap_or(60_000).max(1)
    }

    /// Audits the first refusal of a key in each window, off the request path.
    fn audit_refusal(&self, p: &Principal, kind: &'static str, limit: u64) {
        if !self.local.first_refusal(p.key_id, self.now_ms(), self.window_ms()) {
            return;
        }
        let audit = self.audit.clone();
        let (user, key) = (p.user_id, p.key_id);
        self.tasks.spawn("audit-rate-limit", async move {
            let metadata = serde_json::json!({"key_id": key.to_string(), "limit": kind, "per_minute": limit});
            audit.record(Some(user), "rate_limit_exceeded", metadata, layers_store::Severity::Warning, None).await;
        });
    }

    fn requests_limit(&self, p: &Principal) -> u32 {
        match p.env {
            // The operator's override of an account (an abuse runbook's `--rpm 10`) binds its
            // test keys too.
            KeyEnv::Test => {
                p.account_rate.requests_per_minute.map_or(self.settings.test_key_requests_per_minute, |o| {
                    o.min(self.settings.test_key_requests_per_minute)
                })
            }
            KeyEnv::Live => {
                p.account_rate.requests_per_minute.unwrap_or(self.settings.tier(p.tier).requests_per_minute)
            }
        }
    }

    fn tokens_limit(&self, p: &Principal) -> Option<u64> {
        p.account_rate.tokens_per_minute.or(self.settings.tier(p.tier).tokens_per_minute)
    }

    /// The deployment's verdict, or `None` when Redis is not usable. `Ok`: admitted from a
    /// batch this node holds, no round trip. `Err`: Redis's verdict on this request, to be
    /// confirmed against this node's log.
    async fn global_verdict(&self, key: KeyId, limit: Limit, tpm: Option<u64>) -> Option<Result<Admission, Verdict>> {
        let global = self.global.as_ref().filter(|g| g.is_up())?;
        // Token limits need Redis's running sum on every request: no batches for those keys.
        let batchable = tpm.is_none();
        let sent = self.now_ms();
        if batchable {
            if let Some(remaining) = self.batches.take(key, sent) {
                self.stats.batched.fetch_add(1, Ordering::Relaxed);
                let requests = Decision {
                    allowed: true,
                    limit: limit.requests,
                    remaining,
                    reset_ms: limit.window_ms,
                    retry_after_ms: 0,
                };
                let verdict = Verdict {
                    requests,
                    token_refused: false,
                    tokens_used: 0,
                    token_retry_ms: 0,
                    granted: 1,
                    member: String::new(),
                };
                return Some(Err(verdict));
            }
        }
        let (want, _turn) = if batchable { self.batches.want(key, sent) } else { (1, None) };
        let mut verdict = global.admit(key, limit, tpm, want).await.ok()?;
        if verdict.granted > 1 {
            // Of the batch, this request takes one; the others are still there to be used.
            verdict.requests.remaining = verdict.requests.remaining.saturating_add(verdict.granted - 1);
            self.batches.store(SlotLease {
                key,
                member: verdict.member.clone(),
                granted: verdict.granted,
                used: 1,
                deadline_ms: sent + LEASE_MS,
                remaining_after: verdict.requests.remaining - (verdict.granted - 1),
            });
        }
        Some(Err(verdict))
    }

    /// Redis's verdict, confirmed against this node's log (which records the admission).
    fn with_local_agreement(&self, key: KeyId, limit: Limit, tpm: Option<u64>, g: Verdict) -> Admission {
        let tokens = tpm.map(|l| TokenState { limit: l, remaining: l.saturating_sub(g.tokens_used), reset_ms: 0 });
        let window_ms = limit.window_ms;
        if g.token_refused {
            return Admission {
                requests: g.requests,
                tokens,
                refused: Some(Refusal::Tokens),
                retry_after_ms: g.token_retry_ms.max(1),
                window_ms,
            };
        }
        if !g.requests.allowed {
            let retry = g.requests.retry_after_ms.max(1);
            return Admission {
                requests: g.requests,
                tokens,
                refused: Some(Refusal::Requests),
                retry_after_ms: retry,
                window_ms,
            };
        }
        let local = self.local.check(key, self.now_ms(), limit);
        if !local.allowed {
            // Only after an outage: this node alone already admitted the limit in this window.
            return Admission {
                requests: local,
                tokens,
                refused: Some(Refusal::Requests),
                retry_after_ms: local.retry_after_ms.max(1),
                window_ms,
            };
        }
        // Redis's count is the deployment's, so its remaining is what the headers show.
        Admission { requests: g.requests, tokens, refused: None, retry_after_ms: 0, window_ms }
    }

    /// This node's own verdict: tokens first (a refusal there takes no request slot).
    fn local_admission(&self, key: KeyId, limit: Limit, tpm: Option<u64>) -> Admission {
        let now = self.now_ms();
        let window_ms = limit.window_ms;
        let mut tokens = None;
        if let Some(l) = tpm {
            let (used, retry) = self.local.tokens_used(key, now, window_ms, l);
            tokens = Some(TokenState { limit: l, remaining: l.saturating_sub(used), reset_ms: 0 });
            if used >= l {
                let requests = self.local.peek(key, now, limit);
                return Admission {
                    requests,
                    tokens,
                    refused: Some(Refusal::Tokens),
                    retry_after_ms: retry.max(1),
                    window_ms,
                };
            }
        }
        let requests = self.local.check(key, now, limit);
        if requests.allowed {
            Admission { requests, tokens, refused: None, retry_after_ms: 0, window_ms }
        } else {
            let retry = requests.retry_after_ms.max(1);
            Admission { requests, tokens, refused: Some(Refusal::Requests), retry_after_ms: retry, window_ms }
        }
    }
}

/// Gives back the unused slots of batches past their life, every 100 ms; all of them at shutdown.
fn spawn_batch_returns(inner: &Arc<Inner>, tasks: &Tasks) {
    let weak = Arc::downgrade(inner);
    let cancel = tasks.cancelled();
    tasks.spawn("rate-limit-batch-returns", async move {
        loop {
            let stopping = tokio::select! {
                () = cancel.cancelled() => true,
                () = tokio::time::sleep(Duration::from_millis(100)) => false,
            };
            let Some(inner) = weak.upgrade() else { return };
            let Some(global) = &inner.global else { return };
            let unused = if stopping { inner.batches.drain() } else { inner.batches.expired(inner.now_ms()) };
            for lease in &unused {
                // Best effort: slots not given back leave the window on their own.
                let _ = global.release(lease).await;
            }
            if stopping {
                return;
            }
        }
    });
}
