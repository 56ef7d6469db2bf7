//! Failed-authentication blocking (SPEC §8.4): too many failed authentications from one address
//! within a window block it for a while. Shared across nodes through Redis when configured.
//! Invariant: the check on every request is a local map lookup; only failures reach Redis, and
//! nothing a failing client does makes a node wait on the database or hold unbounded state.
//! A block refuses unknown credentials only: keys known valid are still served (see
//! `crate::admission`), so a shared NAT's paying users are not locked out by a guesser.
//!
//! An IPv4 address is counted on its own; IPv6 by its /64 (the smallest block one subscriber is
//! usually given), and also by its /48 and /32 at 4 and 16 times the threshold, so sweeping
//! /64s within a site or a provider's range does not escape the count.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use redis::Script;

use crate::audit::Audit;
use crate::broadcast::{Broadcaster, Notice};
use crate::clock::Clock;
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

/// What failures are counted against and blocks apply to: an address or a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    net: IpAddr,
    len: u8,
}

impl Subject {
    /// The network of `ip` with the first `len` bits kept.
    pub fn new(ip: IpAddr, len: u8) -> Subject {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let len = len.min(32);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                Subject { net: IpAddr::V4((u32::from(v4) & mask).into()), len }
            }
            IpAddr::V6(v6) => {
                let len = len.min(128);
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
                Subject { net: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)), len }
            }
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl std::str::FromStr for Subject {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = s.split_once('/').unwrap_or((s, "128"));
        let ip: IpAddr = ip.parse()?;
        Ok(Subject::new(ip, len.parse().unwrap_or(128)))
    }
}

/// The subjects an address counts toward, each with its threshold multiplier: an IPv4 address
/// itself; an IPv6 address's /64, /48 (4×) and /32 (16×).
pub fn subjects(ip: IpAddr) -> Vec<(Subject, u32)> {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => vec![(Subject::new(v4, 32), 1)],
        v6 => vec![(Subject::new(v6, 64), 1), (Subject::new(v6, 48), 4), (Subject::new(v6, 32), 16)],
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
/// Local failure logs are swept every this many failures.
const SWEEP_EVERY: u64 = 1_024;
/// Subjects with failures tracked locally at most; past it the oldest are forgotten, so a
/// client spread over millions of addresses costs bounded memory.
pub const TRACKED_SUBJECTS: usize = 65_536;
/// While a network is blocked, keys not known in memory are looked up at most this often for
/// it, so a paying user behind it is served and a guesser behind it costs almost nothing.
const BLOCKED_LOOKUP_EVERY_MS: u64 = 1_000;

/// A block in force.
#[derive(Debug)]
struct Block {
    until_ms: u64,
    /// When a key from this network was last looked up in the database (Unix ms).
    last_lookup_ms: AtomicU64,
}

#[derive(Debug)]
pub struct IpGuard {
    settings: IpGuardSettings,
    /// Blocked subjects and until when (Unix ms), shared by every node through notices.
    blocked: RwLock<HashMap<Subject, Block>>,
    /// Failure times per subject (Unix ms), when counting locally.
    failures: Mutex<HashMap<Subject, VecDeque<u64>>>,
    redis: Option<Redis>,
    failure_script: Script,
    load_script: Script,
    audit: Audit,
    broadcaster: Broadcaster,
    tasks: Tasks,
    /// (minute, audits written in it), packed as minute << 20 | count.
    audit_budget: AtomicU64,
    stats: IpGuardStats,
    clock: Clock,
}

impl IpGuard {
    pub fn new(
        settings: IpGuardSettings,
        redis: Option<Redis>,
        audit: Audit,
        broadcaster: Broadcaster,
        tasks: &Tasks,
        clock: &Clock,
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
            clock: clock.clone(),
        }
    }

    pub fn stats(&self) -> &IpGuardStats {
        &self.stats
    }

    /// Whether unknown credentials from `ip` are refused now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let blocked = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        if blocked.is_empty() {
            return Ok(());
        }
        let now = self.clock.unix_ms();
        let until = subjects(ip).iter().filter_map(|(s, _)| blocked.get(s)).map(|b| b.until_ms).max();
        match until {
            Some(until) if until > now => {
                Err(Blocked { retry_after: Duration::from_millis(until.saturating_sub(now)) })
            }
            _ => Ok(()),
        }
    }

    /// Counts a request refused because its address is blocked.
    pub fn refused(&self) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a key from blocked `ip` that is not known in memory may be looked up now: once
    /// per second per blocked network.
    pub fn may_look_up(&self, ip: IpAddr) -> bool {
        let blocked = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.unix_ms();
        subjects(ip).iter().filter_map(|(s, _)| blocked.get(s)).all(|b| {
            let last = b.last_lookup_ms.load(Ordering::Relaxed);
            now >= last + BLOCKED_LOOKUP_EVERY_MS
                && b.last_lookup_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        })
    }

    /// Blocks `subject` until `until_ms` on this node (from a notice, Redis or a local count).
    pub fn block_local(&self, subject: Subject, until_ms: u64) {
        let mut blocked = self.blocked.write().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.unix_ms();
        blocked.retain(|_, b| b.until_ms > now);
        if until_ms > now {
            let entry = blocked.entry(subject).or_insert(Block { until_ms, last_lookup_ms: AtomicU64::new(0) });
            entry.until_ms = entry.until_ms.max(until_ms);
        }
    }

    /// Records a failed authentication from `ip` and blocks what reached its threshold.
    pub async fn failed(&self, ip: IpAddr, reason: &'static str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        for (i, (who, times)) in subjects(ip).into_iter().enumerate() {
            let threshold = self.settings.threshold.saturating_mul(times);
            let (count, fresh, until) = match self.count_in_redis(who, threshold).await {
                Some(result) => result,
                None => self.count_locally(who, threshold),
            };
            if until > 0 {
                // Also when another node created the block: its notice may have been lost.
                self.block_local(who, until);
            }
            if i == 0 && count == 1 && self.audit_allowed() {
                // The first failure of a window is audited; the rest are counted.
                let metadata = serde_json::json!({"reason": reason});
                self.spawn_audit("auth_failed", metadata, layers_store::Severity::Warning, ip);
            }
            if fresh {
                self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(network = %who, failures = count, "network blocked after repeated failed authentication");
                self.broadcaster.publish(Notice::Block(who, until)).await;
                let metadata = serde_json::json!({
                    "failures": count,
                    "blocked_for_secs": self.settings.block_for.as_secs(),
                    "prefix_len": who.prefix_len(),
                });
                self.spawn_audit("ip_blocked", metadata, layers_store::Severity::Critical, ip);
            }
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
        let minute = self.clock.unix_ms() / 60_000;
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

    async fn count_in_redis(&self, who: Subject, threshold: u32) -> Option<(u32, bool, u64)> {
        let redis = self.redis.as_ref()?;
        let fails = redis.key(&format!("authfail:{who}"));
        let block = redis.key(&format!("block:{who}"));
        let blocks = redis.key("blocks");
        let (window, block_for) = (millis(self.settings.window), millis(self.settings.block_for));
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

    fn count_locally(&self, who: Subject, threshold: u32) -> (u32, bool, u64) {
        let now = self.clock.unix_ms();
        let window = millis(self.settings.window);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let sweep = self.stats.failures.load(Ordering::Relaxed).is_multiple_of(SWEEP_EVERY);
        if sweep || (failures.len() >= TRACKED_SUBJECTS && !failures.contains_key(&who)) {
            failures.retain(|_, times| times.back().is_some_and(|t| t + window > now));
        }
        if failures.len() >= TRACKED_SUBJECTS && !failures.contains_key(&who) {
            // Still full of live counts: forget the eighth that failed longest ago.
            let mut lasts: Vec<(u64, Subject)> =
                failures.iter().map(|(s, t)| (t.back().copied().unwrap_or(0), *s)).collect();
            let cut = (TRACKED_SUBJECTS / 8).min(lasts.len());
            if cut > 0 {
                lasts.select_nth_unstable_by_key(cut - 1, |(last, _)| *last);
                for (_, subject) in &lasts[..cut] {
                    failures.remove(subject);
                }
            }
        }
        let times = failures.entry(who).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| t + window <= now) {
            times.pop_front();
        }
        // Nobody needs more than the threshold's worth of history.
        while times.len() > threshold as usize {
            times.pop_front();
        }
        let count = times.len() as u32;
        if count < threshold {
            return (count, false, 0);
        }
        times.clear();
        let blocked = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        if blocked.get(&who).is_some_and(|b| b.until_ms > now) {
            return (count, false, 0);
        }
        (count, true, now + millis(self.settings.block_for))
    }

    /// Subjects with failures counted locally (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.failures.lock().map_or(0, |f| f.len())
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
            if let Ok(who) = who.parse::<Subject>() {
                self.block_local(who, until);
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_counted_by_its_64_48_and_32() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let (sa, sb, sc) = (subjects(a), subjects(b), subjects(c));
        assert_eq!(sa, sb);
        assert_ne!(sa[0], sc[0]);
        assert_eq!(sa[1], sc[1], "same /48");
        assert_eq!(sa[1].0.to_string(), "2001:db8:1::/48");
        assert_eq!(sa[2].1, 16);
        let v4 = subjects("::ffff:203.0.113.5".parse().unwrap());
        assert_eq!(v4, vec![(Subject::new("203.0.113.5".parse().unwrap(), 32), 1)]);
        for s in [sa[0].0, sa[1].0, v4[0].0] {
            assert_eq!(s.to_string().parse::<Subject>().unwrap(), s);
        }
    }
}
