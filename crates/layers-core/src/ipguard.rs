//! Failed-authentication blocking (SPEC §8.4): too many failed authentications from one IP within
//! a window block that IP for a while. Shared across nodes through Redis when configured.
//! Invariant: the check on every request is a local map lookup; only failures reach Redis.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use crate::audit::Audit;
use crate::broadcast::{Broadcaster, Notice};
use crate::redis_conn::Redis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpGuardSettings {
    /// Failures within `window` that block an IP.
    pub threshold: u32,
    pub window: Duration,
    pub block_for: Duration,
}

impl Default for IpGuardSettings {
    fn default() -> Self {
        IpGuardSettings { threshold: 50, window: Duration::from_secs(300), block_for: Duration::from_secs(900) }
    }
}

/// The IP is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
pub struct IpGuardStats {
    pub failures: AtomicU64,
    pub blocks: AtomicU64,
    pub refused: AtomicU64,
}

/// Count failures in a sliding window; block once the threshold is reached (first node wins).
const FAILURE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[2]) then
  local fresh = redis.call('SET', KEYS[2], now + tonumber(ARGV[3]), 'PX', tonumber(ARGV[3]), 'NX')
  return {count, fresh and 1 or 0, now + tonumber(ARGV[3])}
end
return {count, 0, 0}
"#;

#[derive(Debug)]
pub struct IpGuard {
    settings: IpGuardSettings,
    /// Blocked IPs and until when (Unix ms), shared by every node through notices.
    blocked: RwLock<HashMap<IpAddr, u64>>,
    /// Failure times per IP (Unix ms), when counting locally.
    failures: Mutex<HashMap<IpAddr, VecDeque<u64>>>,
    redis: Option<Redis>,
    script: Script,
    audit: Audit,
    broadcaster: Broadcaster,
    stats: IpGuardStats,
}

impl IpGuard {
    pub fn new(settings: IpGuardSettings, redis: Option<Redis>, audit: Audit, broadcaster: Broadcaster) -> IpGuard {
        IpGuard {
            settings,
            blocked: RwLock::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            redis,
            script: Script::new(FAILURE_SCRIPT),
            audit,
            broadcaster,
            stats: IpGuardStats::default(),
        }
    }

    pub fn stats(&self) -> &IpGuardStats {
        &self.stats
    }

    /// Whether requests from `ip` are refused now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let blocked = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        if blocked.is_empty() {
            return Ok(());
        }
        match blocked.get(&ip) {
            Some(until) if *until > now_ms() => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Blocked { retry_after: Duration::from_millis(until - now_ms()) })
            }
            _ => Ok(()),
        }
    }

    pub fn block_local(&self, ip: IpAddr, until_ms: u64) {
        let mut blocked = self.blocked.write().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        blocked.retain(|_, until| *until > now);
        if until_ms > now {
            let entry = blocked.entry(ip).or_insert(until_ms);
            *entry = (*entry).max(until_ms);
        }
    }

    /// Records a failed authentication from `ip` and blocks it at the threshold.
    pub async fn failed(&self, ip: IpAddr, reason: &'static str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let (count, newly_blocked, until) = match self.count_in_redis(ip).await {
            Some(result) => result,
            None => self.count_locally(ip),
        };
        if count == 1 {
            // The first failure of a window is audited; the rest are counted.
            self.audit
                .record(
                    None,
                    "auth_failed",
                    serde_json::json!({"reason": reason}),
                    layers_store::Severity::Warning,
                    Some(ip),
                )
                .await;
        }
        if newly_blocked {
            self.stats.blocks.fetch_add(1, Ordering::Relaxed);
            self.block_local(ip, until);
            tracing::warn!(%ip, failures = count, "IP blocked after repeated failed authentication");
            self.broadcaster.publish(Notice::Block(ip, until)).await;
            self.audit
                .record(
                    None,
                    "ip_blocked",
                    serde_json::json!({"failures": count, "blocked_for_secs": self.settings.block_for.as_secs()}),
                    layers_store::Severity::Critical,
                    Some(ip),
                )
                .await;
        }
    }

    async fn count_in_redis(&self, ip: IpAddr) -> Option<(u32, bool, u64)> {
        let redis = self.redis.as_ref()?;
        let fails = redis.key(&format!("authfail:{ip}"));
        let block = redis.key(&format!("block:{ip}"));
        let (window, threshold, block_for) = (
            self.settings.window.as_millis() as u64,
            self.settings.threshold,
            self.settings.block_for.as_millis() as u64,
        );
        let member = redis.unique();
        let script = &self.script;
        let result: Result<(i64, i64, i64), _> = redis
            .run(|mut c| async move {
                script
                    .key(fails)
                    .key(block)
                    .arg(window)
                    .arg(threshold)
                    .arg(block_for)
                    .arg(member)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let (count, fresh, until) = result.ok()?;
        Some((u32::try_from(count).unwrap_or(u32::MAX), fresh == 1, u64::try_from(until).unwrap_or(0)))
    }

    fn count_locally(&self, ip: IpAddr) -> (u32, bool, u64) {
        let now = now_ms();
        let window = self.settings.window.as_millis() as u64;
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, times| times.back().is_some_and(|t| t + window > now));
        let times = failures.entry(ip).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| t + window <= now) {
            times.pop_front();
        }
        let count = times.len() as u32;
        let already = self.check(ip).is_err();
        if count >= self.settings.threshold && !already {
            (count, true, now + self.settings.block_for.as_millis() as u64)
        } else {
            (count, false, 0)
        }
    }

    /// Loads the blocks Redis holds (a node that starts or reconnects).
    pub async fn load_blocks(&self) {
        let Some(redis) = &self.redis else { return };
        let prefix = redis.key("block:");
        let mut cursor: u64 = 0;
        loop {
            let pattern = format!("{prefix}*");
            let page: Result<(u64, Vec<String>), _> = redis
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await;
            let Ok((next, keys)) = page else { return };
            for key in keys {
                let Some(ip) = key.strip_prefix(&prefix).and_then(|s| s.parse::<IpAddr>().ok()) else { continue };
                let until: Result<Option<u64>, _> =
                    redis.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await;
                if let Ok(Some(until)) = until {
                    self.block_local(ip, until);
                }
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
