//! Where test keys go (SPEC §3.1): the sandbox, unless the operator lets them reach real
//! routes, then up to a daily number of requests per account, after which they get a 429
//! until midnight UTC. Never billed either way. Invariant: the count is per node (no database
//! or Redis round trip for test traffic), so N nodes allow up to N× the cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use layers_domain::UserId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestKeySettings {
    /// Test keys reach the model's real routes instead of the sandbox.
    pub real_routes: bool,
    /// Requests per account per UTC day on real routes.
    pub daily_requests: u32,
}

impl Default for TestKeySettings {
    fn default() -> Self {
        TestKeySettings { real_routes: false, daily_requests: 100 }
    }
}

#[derive(Debug, Default)]
pub(crate) struct DailyCounts {
    counts: Mutex<(u64, HashMap<UserId, u32>)>,
}

impl DailyCounts {
    /// Counts one request; `Err(wait)` when the account is at its cap for today.
    pub(crate) fn take(&self, user: UserId, cap: u32) -> Result<(), Duration> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let day = now / 86_400;
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 != day {
            *guard = (day, HashMap::new());
        }
        let n = guard.1.entry(user).or_insert(0);
        if *n >= cap {
            return Err(Duration::from_secs((day + 1) * 86_400 - now));
        }
        *n += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_account_up_to_the_cap() {
        let c = DailyCounts::default();
        let (a, b) = (UserId::random(), UserId::random());
        assert!(c.take(a, 2).is_ok() && c.take(a, 2).is_ok());
        let wait = c.take(a, 2).unwrap_err();
        assert!(wait <= Duration::from_secs(86_400) && wait > Duration::ZERO);
        assert!(c.take(b, 2).is_ok(), "another account has its own count");
    }
}
