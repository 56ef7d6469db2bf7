//! Login throttling (SPEC §6.1): failed logins are counted per account and per client address
//! in fixed windows; past a threshold, logins of that account (or from that address) are refused
//! until the window ends, whatever the password. Invariant: an unknown e-mail is counted like a
//! known one (the answer never tells them apart), and the map is bounded in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::Clock;

/// Thresholds (configurable; defaults after OWASP's authentication cheat sheet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failed logins of one account per window before its logins are refused.
    pub per_account: u32,
    /// Failed logins from one address (an IPv6 /64) per window.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings { per_account: 5, per_address: 30, window: Duration::from_secs(15 * 60) }
    }
}

/// Subjects tracked at most.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Account([u8; 16]),
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: u64,
    failures: u32,
}

#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    clock: Clock,
    windows: Mutex<HashMap<Subject, Window>>,
}

/// Logins are refused for now; retry after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

fn account(email: &str) -> Subject {
    let digest = Sha256::digest(email.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    Subject::Account(id)
}

fn address(ip: IpAddr) -> Subject {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            Subject::Address(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
        }
        IpAddr::V6(v6) => Subject::Address(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
        v4 => Subject::Address(v4),
    }
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings, clock: Clock) -> LoginThrottle {
        LoginThrottle { settings, clock, windows: Mutex::new(HashMap::new()) }
    }

    /// Reserves an attempt of `key` (an account, or another subject) from `ip`: refused when
    /// either is at its threshold, else counted at once, before any slow work, so a burst of
    /// parallel attempts cannot all pass while the count is still low. A success gives it back.
    pub fn begin(&self, key: &str, ip: Option<IpAddr>) -> Result<(), Throttled> {
        let now = self.clock.unix_ms();
        let window_ms = u64::try_from(self.settings.window.as_millis()).unwrap_or(u64::MAX);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let subjects: Vec<(Subject, u32)> = std::iter::once((account(key), self.settings.per_account))
            .chain(ip.map(|ip| (address(ip), self.settings.per_address)))
            .collect();
        let retry = subjects
            .iter()
            .filter_map(|(subject, limit)| {
                windows
                    .get(subject)
                    .filter(|w| now.saturating_sub(w.start_ms) < window_ms && w.failures >= *limit)
                    .map(|w| Duration::from_millis(window_ms - now.saturating_sub(w.start_ms)))
            })
            .max();
        if let Some(retry_after) = retry {
            return Err(Throttled { retry_after });
        }
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now.saturating_sub(w.start_ms) < window_ms);
            if windows.len() >= MAX_TRACKED {
                // Still full of live windows: forget the oldest half rather than grow.
                let mut starts: Vec<u64> = windows.values().map(|w| w.start_ms).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                windows.retain(|_, w| w.start_ms > cut);
            }
        }
        for (subject, _) in subjects {
            let w = windows.entry(subject).or_insert(Window { start_ms: now, failures: 0 });
            if now.saturating_sub(w.start_ms) >= window_ms {
                *w = Window { start_ms: now, failures: 0 };
            }
            w.failures = w.failures.saturating_add(1);
        }
        Ok(())
    }

    /// The attempt succeeded: the account's count is cleared, the address's attempt given back.
    pub fn succeeded(&self, key: &str, ip: Option<IpAddr>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.remove(&account(key));
        if let Some(w) = ip.and_then(|ip| windows.get_mut(&address(ip))) {
            w.failures = w.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_at_the_threshold_and_not_below_then_lifts() {
        let clock = Clock::system();
        let t = LoginThrottle::new(ThrottleSettings::default(), clock.clone());
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..4 {
            t.begin("a@example.com", Some(ip)).unwrap();
        }
        assert_eq!(t.begin("a@example.com", Some(ip)), Ok(()), "the fifth attempt is allowed");
        let refused = t.begin("a@example.com", Some(ip)).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(900) && refused.retry_after > Duration::from_secs(890));
        assert_eq!(t.begin("b@example.com", Some(ip)), Ok(()), "another account from the address is fine");
        clock.advance(Duration::from_secs(901));
        assert_eq!(t.begin("a@example.com", Some(ip)), Ok(()));
    }

    #[test]
    fn an_address_is_throttled_across_accounts_and_ipv6_by_its_64() {
        let t = LoginThrottle::new(ThrottleSettings::default(), Clock::system());
        for i in 0..30u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.begin(&format!("user{i}@example.com"), Some(ip)).unwrap();
        }
        let other_host: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(t.begin("fresh@example.com", Some(other_host)).is_err());
        assert_eq!(t.begin("fresh@example.com", Some("2001:db8:1:3::1".parse().unwrap())), Ok(()));
        t.succeeded("user1@example.com", Some(other_host));
        assert_eq!(t.begin("user1@example.com", Some(other_host)), Ok(()), "a success gives one attempt back");
        assert!(t.begin("user2@example.com", Some(other_host)).is_err());
    }
}

#[cfg(test)]
mod race {
    use super::*;

    #[test]
    fn a_burst_of_parallel_attempts_gets_no_more_than_the_threshold() {
        let t = std::sync::Arc::new(LoginThrottle::new(ThrottleSettings::default(), Clock::system()));
        let admitted: usize = (0..64)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.begin("victim@example.com", None).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(admitted, 5);
    }
}
