//! Failed-authentication blocking (SPEC §8.4): too many failed authentications from one address
//! within a window block it for a while. Shared across nodes through Redis when configured.
//! Invariant: the check on every request is a local map lookup; only failures reach Redis, and
//! nothing a failing client does makes a node wait on the database or scan unbounded state.
//!
//! An IPv4 address is blocked on its own; IPv6 by its /64, the smallest block one subscriber is
//! usually given, so rotating addresses within it does not escape the count.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use crate::audit::Audit;
use crate::broadcast::{Broadcaster, Notice};
use crate::redis_conn::Redis;
use crate::tasks::Tasks;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpGuardSettings {
    /// Failures within `window` that block an address.
    pub threshold: u32,
    pub window: Duration,
    pub block_for: Duration,
}

impl Default for IpGuardSettings {
    fn default() -> Self {
        IpGuardSettings { threshold: 50, window: Duration::from_secs(300), block_for: Duration::from_secs(900) }
    }
}

/// The address is blocked.
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

/// Count failures in a sliding window; at the threshold, block (the first node to get there
/// creates the block; every later one learns its end). Blocks are also kept in one hash, so a
/// node that (re)connects loads them without scanning the keyspace.
/// KEYS: failures zset, block key, blocks hash. ARGV: window ms, threshold, block ms, member,
/// subject.
const FAILURE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[2]) then
  return {count, 0, 0}
end
local blocked_until = now + tonumber(ARGV[3])
if redis.call('SET', KEYS[2], blocked_until, 'PX', tonumber(ARGV[3]), 'NX') then
  redis.call('HSET', KEYS[3], ARGV[5], blocked_until)
  return {count, 1, blocked_until}
end
return {count, 0, tonumber(redis.call('GET', KEYS[2]) or blocked_until)}
"#;

/// The blocks still in force (expired ones are dropped on the way).
const LOAD_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) > now then
    table.insert(live, all[i])
    table.insert(live, all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"#;

/// At most this many `auth_failed` audit events per node per minute: a client rotating
/// addresses must not turn into a write load on the database.
const AUDITS_PER_MINUTE: u64 = 60;
/// Local failure logs are swept every this many failures (and the map never grows unchecked).
const SWEEP_EVERY: u64 = 1_024;

#[derive(Debug)]
pub struct IpGuard {
    settings: IpGuardSettings,
    /// Blocked subjects and until when (Unix ms), shared by every node through notices.
    blocked: RwLock<HashMap<IpAddr, u64>>,
    /// Failure times per subject (Unix ms), when counting locally.
    failures: Mutex<HashMap<IpAddr, VecDeque<u64>>>,
    redis: Option<Redis>,
    failure_script: Script,
    load_script: Script,
    audit: Audit,
    broadcaster: Broadcaster,
    tasks: Tasks,
    /// (minute, audits written in it), packed as minute << 20 | count.
    audit_budget: AtomicU64,
    stats: IpGuardStats,
}

impl IpGuard {
    pub fn new(
        settings: IpGuardSettings,
        redis: Option<Redis>,
        audit: Audit,
        broadcaster: Broadcaster,
        tasks: &Tasks,
    ) -> IpGuard {
        IpGuard {
            settings,
            blocked: RwLock::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            redis,
            failure_script: Script::new(FAILURE_SCRIPT),
            load_script: Script::new(LOAD_SCRIPT),
            audit,
            broadcaster,
            tasks: tasks.clone(),
            audit_budget: AtomicU64::new(0),
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
        let now = now_ms();
        match blocked.get(&subject(ip)) {
            Some(until) if *until > now => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Blocked { retry_after: Duration::from_millis(until.saturating_sub(now)) })
            }
            _ => Ok(()),
        }
    }

    /// Blocks `subject` until `until_ms` on this node (from a notice, Redis or a local count).
    pub fn block_local(&self, subject: IpAddr, until_ms: u64) {
        let mut blocked = self.blocked.write().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        blocked.retain(|_, until| *until > now);
        if until_ms > now {
            let entry = blocked.entry(subject).or_insert(until_ms);
            *entry = (*entry).max(until_ms);
        }
    }

    /// Records a failed authentication from `ip` and blocks it at the threshold.
    pub async fn failed(&self, ip: IpAddr, reason: &'static str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let who = subject(ip);
        let (count, fresh, until) = match self.count_in_redis(who).await {
            Some(result) => result,
            None => self.count_locally(who),
        };
        if until > 0 {
            // Also when another node created the block: its notice may have been lost.
            self.block_local(who, until);
        }
        if count == 1 && self.audit_allowed() {
            // The first failure of a window is audited; the rest are counted.
            self.spawn_audit(
                "auth_failed",
                serde_json::json!({"reason": reason}),
                layers_store::Severity::Warning,
                who,
            );
        }
        if fresh {
            self.stats.blocks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(ip = %who, failures = count, "address blocked after repeated failed authentication");
            self.broadcaster.publish(Notice::Block(who, until)).await;
            let metadata = serde_json::json!({
                "failures": count,
                "blocked_for_secs": self.settings.block_for.as_secs(),
                "prefix_len": if who.is_ipv4() { 32 } else { 64 },
            });
            self.spawn_audit("ip_blocked", metadata, layers_store::Severity::Critical, who);
        }
    }

    fn spawn_audit(
        &self,
        event: &'static str,
        metadata: serde_json::Value,
        severity: layers_store::Severity,
        ip: IpAddr,
    ) {
        let audit = self.audit.clone();
        self.tasks.spawn("audit-ip-guard", async move {
            audit.record(None, event, metadata, severity, Some(ip)).await;
        });
    }

    fn audit_allowed(&self) -> bool {
        let minute = now_ms() / 60_000;
        let mut current = self.audit_budget.load(Ordering::Relaxed);
        loop {
            let (m, n) = (current >> 20, current & 0xF_FFFF);
            let next = if m == minute { (minute << 20) | (n + 1) } else { (minute << 20) | 1 };
            if m == minute && n >= AUDITS_PER_MINUTE {
                return false;
            }
            match self.audit_budget.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    async fn count_in_redis(&self, who: IpAddr) -> Option<(u32, bool, u64)> {
        let redis = self.redis.as_ref()?;
        let fails = redis.key(&format!("authfail:{who}"));
        let block = redis.key(&format!("block:{who}"));
        let blocks = redis.key("blocks");
        let (window, threshold, block_for) =
            (millis(self.settings.window), self.settings.threshold, millis(self.settings.block_for));
        let member = redis.unique();
        let script = &self.failure_script;
        let subject = who.to_string();
        let result: Result<(i64, i64, i64), _> = redis
            .run(|mut c| async move {
                script
                    .key(fails)
                    .key(block)
                    .key(blocks)
                    .arg(window)
                    .arg(threshold)
                    .arg(block_for)
                    .arg(member)
                    .arg(subject)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let (count, fresh, until) = result.ok()?;
        Some((u32::try_from(count).unwrap_or(u32::MAX), fresh == 1, u64::try_from(until).unwrap_or(0)))
    }

    fn count_locally(&self, who: IpAddr) -> (u32, bool, u64) {
        let now = now_ms();
        let window = millis(self.settings.window);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if self.stats.failures.load(Ordering::Relaxed).is_multiple_of(SWEEP_EVERY) {
            failures.retain(|_, times| times.back().is_some_and(|t| t + window > now));
        }
        let times = failures.entry(who).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| t + window <= now) {
            times.pop_front();
        }
        // Nobody needs more than the threshold's worth of history.
        while times.len() > self.settings.threshold as usize {
            times.pop_front();
        }
        let count = times.len() as u32;
        if count < self.settings.threshold {
            return (count, false, 0);
        }
        if self.check(who).is_err() {
            return (count, false, 0);
        }
        times.clear();
        (count, true, now + millis(self.settings.block_for))
    }

    /// Loads the blocks Redis holds (a node that starts or reconnects).
    pub async fn load_blocks(&self) {
        let Some(redis) = &self.redis else { return };
        let key = redis.key("blocks");
        let script = &self.load_script;
        let live: Result<Vec<(String, u64)>, _> =
            redis.run(|mut c| async move { script.key(key).invoke_async(&mut c).await }).await;
        let Ok(live) = live else { return };
        for (who, until) in live {
            if let Ok(who) = who.parse::<IpAddr>() {
                self.block_local(who, until);
            }
        }
    }
}

/// What is counted and blocked for an address: itself for IPv4, its /64 for IPv6.
pub fn subject(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_counted_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(subject(a), subject(b));
        assert_ne!(subject(a), subject(c));
        assert_eq!(subject("203.0.113.5".parse().unwrap()), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(subject("::ffff:203.0.113.5".parse().unwrap()), "203.0.113.5".parse::<IpAddr>().unwrap());
    }
}
