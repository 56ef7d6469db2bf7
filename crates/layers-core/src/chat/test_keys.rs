//! Where test keys go (SPEC §3.1): the sandbox, unless the operator lets them reach real
//! routes, then up to a daily number of requests per account, after which they get a 429
//! until midnight UTC. Never billed either way. Invariant: with Redis the count is the
//! deployment's (one INCR per request); without it, or while Redis is down, each node counts
//! on its own, so N nodes allow up to N× the cap meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use layers_domain::UserId;

use crate::redis_conn::Redis;

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
    redis: Option<Redis>,
    clock: crate::clock::Clock,
}

const INCR_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 172800) end
return n
"#;

impl DailyCounts {
    pub(crate) fn new(redis: Option<Redis>, clock: crate::clock::Clock) -> DailyCounts {
        DailyCounts { counts: Mutex::default(), redis, clock }
    }

    /// Counts one request; `Err(wait)` when the account is at its cap for today.
    pub(crate) async fn take(&self, user: UserId, cap: u32) -> Result<(), Duration> {
        let now = self.clock.unix_ms() / 1_000;
        let day = now / 86_400;
        let until_midnight = Duration::from_secs((day + 1) * 86_400 - now);
        if let Some(redis) = &self.redis {
            let key = redis.key(&format!("tk:{}:{day}", user.0.simple()));
            let script = redis::Script::new(INCR_SCRIPT);
            let counted: Result<u64, _> =
                redis.run(|mut c| async move { script.key(key).invoke_async(&mut c).await }).await;
            if let Ok(n) = counted {
                return if n > u64::from(cap) { Err(until_midnight) } else { Ok(()) };
            }
        }
        self.take_locally(user, cap, day, until_midnight)
    }

    fn take_locally(&self, user: UserId, cap: u32, day: u64, until_midnight: Duration) -> Result<(), Duration> {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 != day {
            *guard = (day, HashMap::new());
        }
        let n = guard.1.entry(user).or_insert(0);
        if *n >= cap {
            return Err(until_midnight);
        }
        *n += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_account_up_to_the_cap() {
        let c = DailyCounts::default();
        let (a, b) = (UserId::random(), UserId::random());
        assert!(c.take(a, 2).await.is_ok() && c.take(a, 2).await.is_ok());
        let wait = c.take(a, 2).await.unwrap_err();
        assert!(wait <= Duration::from_secs(86_400) && wait > Duration::ZERO);
        assert!(c.take(b, 2).await.is_ok(), "another account has its own count");
    }
}
