//! Rate limits per key by the account's tier (SPEC §5): requests per minute, and optionally
//! tokens per minute. With Redis the limit is global across nodes (one atomic script per request);
//! without it, or while it is down, each node limits on its own. Invariant: a request is counted
//! once, in exactly one place, before it reaches a provider.

mod local;
mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::ratelimit::{Decision, Limit};
use layers_domain::{KeyEnv, KeyId, Tier};
use tokio::time::Instant;

use self::local::Local;
use self::redis::Global;
use crate::audit::Audit;
use crate::auth::Principal;
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
    /// Test keys are limited to at most this (they are for trying things, not for load).
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
            test_key_requests_per_minute: 10,
            window: Duration::from_secs(60),
        }
    }
}

impl RateSettings {
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

/// The verdict on one request, with everything its response headers show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub requests: Decision,
    pub tokens: Option<TokenState>,
    /// Set when refused: until a retry can succeed.
    pub retry_after_ms: Option<u64>,
    pub window_ms: u64,
}

impl Admission {
    pub fn allowed(&self) -> bool {
        self.retry_after_ms.is_none()
    }
}

#[derive(Debug, Default)]
pub struct RateStats {
    pub rejections: AtomicU64,
    pub token_rejections: AtomicU64,
    pub local_decisions: AtomicU64,
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
    epoch: Instant,
    stats: RateStats,
    audit: Audit,
    tasks: Tasks,
}

impl RateLimiter {
    pub fn new(settings: RateSettings, redis: Option<Redis>, audit: Audit, tasks: &Tasks) -> RateLimiter {
        let inner = Arc::new(Inner {
            global: redis.map(Global::new),
            settings,
            local: Local::default(),
            epoch: Instant::now(),
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
        RateLimiter { inner }
    }

    pub fn stats(&self) -> &RateStats {
        &self.inner.stats
    }

    /// Counts the request and decides.
    pub async fn admit(&self, p: &Principal) -> Admission {
        let inner = &self.inner;
        let limit = Limit { requests: inner.requests_limit(p), window_ms: inner.window_ms() };
        let requests = inner.check_requests(p.key_id, limit).await;
        let window_ms = limit.window_ms;
        if !requests.allowed {
            inner.stats.rejections.fetch_add(1, Ordering::Relaxed);
            inner.audit_refusal(p, "requests", u64::from(limit.requests));
            return Admission { requests, tokens: None, retry_after_ms: Some(requests.retry_after_ms), window_ms };
        }
        let Some(tpm) = inner.tokens_limit(p) else {
            return Admission { requests, tokens: None, retry_after_ms: None, window_ms };
        };
        let (used, retry) = inner.tokens_used(p.key_id, tpm).await;
        let tokens = TokenState { limit: tpm, remaining: tpm.saturating_sub(used), reset_ms: window_ms };
        if used >= tpm {
            inner.stats.token_rejections.fetch_add(1, Ordering::Relaxed);
            inner.audit_refusal(p, "tokens", tpm);
            return Admission { requests, tokens: Some(tokens), retry_after_ms: Some(retry.max(1)), window_ms };
        }
        Admission { requests, tokens: Some(tokens), retry_after_ms: None, window_ms }
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
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
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
        let rpm = p.account_rate.requests_per_minute.unwrap_or(self.settings.tier(p.tier).requests_per_minute);
        match p.env {
            KeyEnv::Test => rpm.min(self.settings.test_key_requests_per_minute),
            KeyEnv::Live => rpm,
        }
    }

    fn tokens_limit(&self, p: &Principal) -> Option<u64> {
        p.account_rate.tokens_per_minute.or(self.settings.tier(p.tier).tokens_per_minute)
    }

    async fn check_requests(&self, key: KeyId, limit: Limit) -> Decision {
        if let Some(global) = self.global.as_ref().filter(|g| g.is_up()) {
            if let Ok(d) = global.check(key, limit).await {
                return d;
            }
        }
        self.stats.local_decisions.fetch_add(1, Ordering::Relaxed);
        self.local.check(key, self.now_ms(), limit)
    }

    async fn tokens_used(&self, key: KeyId, limit: u64) -> (u64, u64) {
        let window_ms = self.window_ms();
        if let Some(global) = self.global.as_ref().filter(|g| g.is_up()) {
            if let Ok(used) = global.tokens_used(key, window_ms.div_ceil(1_000)).await {
                // Buckets are per second: the oldest leaves within the window.
                return (used, if used >= limit { 1_000 } else { 0 });
            }
        }
        self.local.tokens_used(key, self.now_ms(), window_ms, limit)
    }
}
