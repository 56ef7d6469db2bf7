//! The global limiter on Redis: one atomic script per request (SPEC §5), so every node shares
//! one window per key. Invariant: Redis's own clock (`TIME`) times every window, so nodes with
//! skewed clocks still agree.

use layers_domain::ratelimit::{Decision, Limit};
use layers_domain::KeyId;
use redis::Script;

use super::batch::{SlotLease, LEASE_MS};
use crate::redis_conn::{Redis, RedisError};

fn requests_key(redis: &Redis, key: KeyId) -> String {
    redis.key(&format!("rl:{{{}}}", key.0.simple()))
}

/// One round trip per request: the key's token window first (refusing there takes no request
/// slot), then the sliding-window log of requests as a sorted set.
/// KEYS: request log (zset), token buckets (hash of second -> tokens); both carry the key id as
/// a hash tag, so they live on one shard of a Redis Cluster.
/// ARGV: window ms, request limit, unique member, token limit (0: none), slots wanted, batch
/// life ms.
/// Returns {verdict (1 admitted, 0 refused by requests, -1 refused by tokens), remaining,
/// reset ms, retry ms, tokens used, token retry ms, slots granted}.
/// A batch (more than one slot) is granted only while the key has ample room, at most a quarter
/// of it, and its slots are dated at the end of the batch's life, so each counts for at least a
/// window after the node uses it (see `batch.rs`).
const ADMIT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tpm = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local function newest_reset()
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then return math.max(0, tonumber(newest[2]) + window - now) end
  return 0
end
local used = 0
if tpm > 0 then
  -- A bucket holds second s, so its tokens count until s + 1 + the window (never early).
  local wsecs = math.ceil(window / 1000)
  local all = redis.call('HGETALL', KEYS[2])
  local buckets = {}
  for i = 1, #all, 2 do
    local sec = tonumber(all[i])
    if sec + wsecs + 1 <= now_s then
      redis.call('HDEL', KEYS[2], all[i])
    else
      used = used + tonumber(all[i + 1])
      table.insert(buckets, {sec, tonumber(all[i + 1])})
    end
  end
  if used >= tpm then
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local left = used
    local retry = 1000
    for _, b in ipairs(buckets) do
      left = left - b[2]
      if left < tpm then
        retry = math.max(1, (b[1] + wsecs + 1) * 1000 - now)
        break
      end
    end
    return {-1, math.max(0, limit - count), newest_reset(), 0, used, retry, 0}
  end
end
if count < limit then
  local room = limit - count
  local want = tonumber(ARGV[5])
  local life = tonumber(ARGV[6])
  local grant = 1
  if want > 1 and room >= 64 then
    grant = math.max(1, math.min(want, math.floor(room / 4)))
  end
  if grant == 1 then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
  else
    -- One ZADD per 500 members (Lua's unpack has a stack limit).
    local at = now + life
    local args = {}
    for i = 1, grant do
      args[#args + 1] = at
      args[#args + 1] = ARGV[3] .. '.' .. i
      if #args == 1000 or i == grant then
        redis.call('ZADD', KEYS[1], unpack(args))
        args = {}
      end
    end
  end
  redis.call('PEXPIRE', KEYS[1], window + life)
  return {1, room - grant, window, 0, used, 0, grant}
end
-- Refused: a slot frees when the entry `limit` places before the end leaves the window (after
-- a lowered limit there can be more than `limit` entries).
local gate = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local g = tonumber(gate[2] or now)
return {0, 0, newest_reset(), math.max(1, g + window - now), used, 0, 0}
"#;

/// Gives back unused slots of a batch: members `{ARGV[1]}.{i}` for i in ARGV[2]..=ARGV[3].
const RELEASE_SCRIPT: &str = r#"
local last = tonumber(ARGV[3])
local members = {}
for i = tonumber(ARGV[2]), last do
  members[#members + 1] = ARGV[1] .. '.' .. i
  if #members == 1000 or i == last then
    redis.call('ZREM', KEYS[1], unpack(members))
    members = {}
  end
end
return 1
"#;

const TOKENS_ADD_SCRIPT: &str = r#"
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], t[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 2)
return 1
"#;

/// What Redis decided for one request.
#[derive(Clone, Debug)]
pub(super) struct Verdict {
    pub requests: Decision,
    /// Refused by the token limit (no request slot was taken).
    pub token_refused: bool,
    pub tokens_used: u64,
    pub token_retry_ms: u64,
    /// Slots granted (more than one: a batch named `member`).
    pub granted: u32,
    pub member: String,
}

#[derive(Debug)]
pub(super) struct Global {
    redis: Redis,
    admit: Script,
    release: Script,
    tokens_add: Script,
}

impl Global {
    pub fn new(redis: Redis) -> Global {
        Global {
            redis,
            admit: Script::new(ADMIT_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            tokens_add: Script::new(TOKENS_ADD_SCRIPT),
        }
    }

    pub fn is_up(&self) -> bool {
        self.redis.is_up()
    }

    pub async fn admit(&self, key: KeyId, limit: Limit, tpm: Option<u64>, want: u32) -> Result<Verdict, RedisError> {
        let requests_key = requests_key(&self.redis, key);
        let tokens_key = self.redis.key(&format!("tpm:{{{}}}", key.0.simple()));
        let member = self.redis.unique();
        let script = &self.admit;
        let arg = member.clone();
        let (verdict, remaining, reset, retry, used, token_retry, granted): (i64, i64, i64, i64, i64, i64, i64) = self
            .redis
            .run(|mut c| async move {
                script
                    .key(requests_key)
                    .key(tokens_key)
                    .arg(limit.window_ms)
                    .arg(limit.requests)
                    .arg(arg)
                    .arg(tpm.unwrap_or(0))
                    .arg(want)
                    .arg(LEASE_MS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let non_negative = |v: i64| u64::try_from(v.max(0)).unwrap_or(0);
        Ok(Verdict {
            requests: Decision {
                allowed: verdict == 1,
                limit: limit.requests,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
                reset_ms: non_negative(reset),
                retry_after_ms: non_negative(retry),
            },
            token_refused: verdict == -1,
            tokens_used: non_negative(used),
            token_retry_ms: non_negative(token_retry),
            granted: u32::try_from(granted.max(0)).unwrap_or(0),
            member,
        })
    }

    /// Gives back the unused slots of a batch.
    pub async fn release(&self, lease: &SlotLease) -> Result<(), RedisError> {
        let k = requests_key(&self.redis, lease.key);
        let script = &self.release;
        let (member, from, to) = (lease.member.clone(), lease.used + 1, lease.granted);
        let _: i64 = self
            .redis
            .run(|mut c| async move { script.key(k).arg(member).arg(from).arg(to).invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    pub async fn add_tokens(&self, key: KeyId, tokens: u64, window_secs: u64) -> Result<(), RedisError> {
        let k = self.redis.key(&format!("tpm:{{{}}}", key.0.simple()));
        let script = &self.tokens_add;
        let _: i64 = self
            .redis
            .run(|mut c| async move { script.key(k).arg(tokens).arg(window_secs).invoke_async(&mut c).await })
            .await?;
        Ok(())
    }
}
