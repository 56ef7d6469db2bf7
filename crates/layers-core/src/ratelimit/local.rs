//! In-process limiter state: one request log and token window per key, in sharded maps.
//! Invariant: used alone in the embedded default, and by a node whose Redis is down.

use std::collections::HashMap;
use std::sync::Mutex;

use layers_domain::ratelimit::{Decision, Limit, TokenWindow, WindowLog};
use layers_domain::KeyId;

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Entry {
    log: WindowLog,
    tokens: TokenWindow,
    /// When a refusal of this key was last audited.
    audited_at: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Local {
    shards: Vec<Mutex<HashMap<KeyId, Entry>>>,
}

impl Default for Local {
    fn default() -> Self {
        Local { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl Local {
    fn shard(&self, key: KeyId) -> std::sync::MutexGuard<'_, HashMap<KeyId, Entry>> {
        let i = (key.0.as_u128() % SHARDS as u128) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check(&self, key: KeyId, now_ms: u64, limit: Limit) -> Decision {
        self.shard(key).entry(key).or_default().log.check(now_ms, limit)
    }

    pub fn peek(&self, key: KeyId, now_ms: u64, limit: Limit) -> Decision {
        self.shard(key).entry(key).or_default().log.peek(now_ms, limit)
    }

    pub fn tokens_used(&self, key: KeyId, now_ms: u64, window_ms: u64, limit: u64) -> (u64, u64) {
        let mut shard = self.shard(key);
        let entry = shard.entry(key).or_default();
        let used = entry.tokens.used(now_ms, window_ms);
        let retry = if used >= limit { entry.tokens.retry_after_ms(now_ms, window_ms, limit) } else { 0 };
        (used, retry)
    }

    pub fn add_tokens(&self, key: KeyId, now_ms: u64, tokens: u64) {
        self.shard(key).entry(key).or_default().tokens.add(now_ms, tokens);
    }

    /// Whether a refusal now should be audited: the first of each window per key, so a client
    /// hammering a limit leaves one event a minute, not thousands.
    pub fn first_refusal(&self, key: KeyId, now_ms: u64, window_ms: u64) -> bool {
        let mut shard = self.shard(key);
        let entry = shard.entry(key).or_default();
        match entry.audited_at {
            Some(t) if now_ms.saturating_sub(t) < window_ms => false,
            _ => {
                entry.audited_at = Some(now_ms);
                true
            }
        }
    }

    /// Drops keys whose windows hold nothing that still counts.
    pub fn prune(&self, now_ms: u64, window_ms: u64) {
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| {
                let audited = e.audited_at.is_some_and(|t| now_ms.saturating_sub(t) < window_ms);
                audited || !(e.log.is_idle(now_ms, window_ms) && e.tokens.used(now_ms, window_ms) == 0)
            });
        }
    }
}
