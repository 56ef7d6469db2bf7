//! The global limiter on Redis: one atomic script per request (SPEC §5), so every node shares
//! one window per key. Invariant: Redis's own clock (`TIME`) times every window, so nodes with
//! skewed clocks still agree.

use layers_domain::ratelimit::{Decision, Limit};
use layers_domain::KeyId;
use redis::Script;

use crate::redis_conn::{Redis, RedisError};

/// The sliding-window log as a sorted set: drop what left the window, admit if under the limit.
const REQUEST_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, window, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local o = tonumber(oldest[2] or now)
local n = tonumber(newest[2] or now)
return {0, 0, math.max(0, n + window - now), math.max(1, o + window - now)}
"#;

/// Tokens in per-second buckets of a hash: sum the window, drop older buckets.
const TOKENS_USED_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local sec = tonumber(all[i])
  if sec <= now - window then
    redis.call('HDEL', KEYS[1], all[i])
  else
    sum = sum + tonumber(all[i + 1])
  end
end
return sum
"#;

const TOKENS_ADD_SCRIPT: &str = r#"
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], t[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return 1
"#;

#[derive(Debug)]
pub(super) struct Global {
    redis: Redis,
    request: Script,
    tokens_used: Script,
    tokens_add: Script,
}

impl Global {
    pub fn new(redis: Redis) -> Global {
        Global {
            redis,
            request: Script::new(REQUEST_SCRIPT),
            tokens_used: Script::new(TOKENS_USED_SCRIPT),
            tokens_add: Script::new(TOKENS_ADD_SCRIPT),
        }
    }

    pub fn is_up(&self) -> bool {
        self.redis.is_up()
    }

    pub async fn check(&self, key: KeyId, limit: Limit) -> Result<Decision, RedisError> {
        let member = self.redis.unique();
        let k = self.redis.key(&format!("rl:{}", key.0.simple()));
        let script = &self.request;
        let (allowed, remaining, reset, retry): (i64, i64, i64, i64) = self
            .redis
            .run(|mut c| async move {
                script.key(k).arg(limit.window_ms).arg(limit.requests).arg(member).invoke_async(&mut c).await
            })
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: limit.requests,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            reset_ms: u64::try_from(reset.max(0)).unwrap_or(0),
            retry_after_ms: u64::try_from(retry.max(0)).unwrap_or(0),
        })
    }

    pub async fn tokens_used(&self, key: KeyId, window_secs: u64) -> Result<u64, RedisError> {
        let k = self.redis.key(&format!("tpm:{}", key.0.simple()));
        let script = &self.tokens_used;
        let used: i64 =
            self.redis.run(|mut c| async move { script.key(k).arg(window_secs).invoke_async(&mut c).await }).await?;
        Ok(u64::try_from(used.max(0)).unwrap_or(0))
    }

    pub async fn add_tokens(&self, key: KeyId, tokens: u64, window_secs: u64) -> Result<(), RedisError> {
        let k = self.redis.key(&format!("tpm:{}", key.0.simple()));
        let script = &self.tokens_add;
        let _: i64 = self
            .redis
            .run(|mut c| async move { script.key(k).arg(tokens).arg(window_secs).invoke_async(&mut c).await })
            .await?;
        Ok(())
    }
}
