//! Instant invalidation across nodes over Redis pub/sub (SPEC §3, §5): a key deactivated or
//! deleted, an account whose tier, caps or status changed, an IP blocked. Invariant: this is the
//! fast path only — every change also lands in the database feed every node polls, so a lost
//! message delays an invalidation by one poll, never forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use layers_domain::hex::{decode as unhex, encode as hex};
use layers_domain::UserId;

use crate::auth::cache::KeyCache;
use crate::billing::Billing;
use crate::ipguard::IpGuard;
use crate::redis_conn::Redis;
use crate::tasks::Tasks;

/// What a node tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key changed: drop it by its stored hash.
    Key(Vec<u8>),
    /// An account changed: drop all its keys.
    Account(UserId),
    /// An address or network is blocked until this Unix time (ms).
    Block(crate::ipguard::Subject, u64),
    /// A node needs credit the account's leases hold: give back what is free (reclaim epoch).
    Reclaim(UserId, i64),
}

impl Notice {
    pub fn encode(&self) -> String {
        match self {
            Notice::Key(hash) => format!("key:{}", hex(hash)),
            Notice::Account(user) => format!("account:{user}"),
            Notice::Block(ip, until) => format!("block:{until}:{ip}"),
            Notice::Reclaim(user, epoch) => format!("reclaim:{epoch}:{user}"),
        }
    }

    pub fn decode(s: &str) -> Option<Notice> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "key" => unhex(rest).map(Notice::Key),
            "account" => rest.parse().ok().map(Notice::Account),
            "block" => {
                let (until, ip) = rest.split_once(':')?;
                Some(Notice::Block(ip.parse().ok()?, until.parse().ok()?))
            }
            "reclaim" => {
                let (epoch, user) = rest.split_once(':')?;
                Some(Notice::Reclaim(user.parse().ok()?, epoch.parse().ok()?))
            }
            _ => None,
        }
    }
}

/// Applies a notice to this node's key cache at once, then tells the other nodes over Redis
/// when it is configured.
#[derive(Clone, Debug, Default)]
pub struct Broadcaster {
    redis: Option<Redis>,
    cache: Option<Arc<KeyCache>>,
}

impl Broadcaster {
    /// `cache` is this node's key cache (`None` for a process that serves nothing, like `admin`).
    pub fn new(redis: Option<Redis>, cache: Option<Arc<KeyCache>>) -> Broadcaster {
        Broadcaster { redis, cache }
    }

    pub async fn publish(&self, notice: Notice) {
        if let Some(cache) = &self.cache {
            match &notice {
                Notice::Key(hash) => cache.remove(hash),
                Notice::Account(user) => cache.remove_user(*user),
                Notice::Block(..) | Notice::Reclaim(..) => {}
            }
        }
        if let Some(redis) = &self.redis {
            redis.publish(&notice.encode()).await;
        }
    }
}

/// What notices act on: this node's key cache, IP guard and credit leases.
#[derive(Clone, Debug)]
pub struct Followers {
    pub cache: Arc<KeyCache>,
    pub guard: Arc<IpGuard>,
    pub billing: Billing,
}

/// Follows the channel and applies what arrives. Reconnects by itself, and starts a fresh
/// session whenever Redis comes back after being down (a subscription can outlive a Redis that
/// stopped answering without closing the connection).
pub fn spawn_subscriber(redis: Redis, followers: Followers, stats: Arc<BroadcastStats>, tasks: &Tasks) {
    let Followers { cache, guard, billing } = followers;
    let cancel = tasks.cancelled();
    tasks.spawn("redis-subscriber", async move {
        let channel = redis.key("events");
        let mut generation = redis.generation();
        let mut failing = false;
        loop {
            generation.borrow_and_update();
            let session = async {
                let mut pubsub = tokio::time::timeout(Duration::from_secs(3), redis.client().get_async_pubsub())
                    .await
                    .map_err(|_| SessionError::Timeout)??;
                pubsub.subscribe(&channel).await?;
                // Blocks made while this node was away.
                guard.load_blocks().await;
                // Invalidations missed while disconnected are in the database feed; dropping the
                // cache closes the gap at once.
                cache.clear();
                if std::mem::take(&mut failing) {
                    tracing::info!("events subscription restored");
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    match Notice::decode(&payload) {
                        Some(Notice::Key(hash)) => cache.remove(&hash),
                        Some(Notice::Account(user)) => {
                            cache.remove_user(user);
                            billing.account_changed(user);
                        }
                        Some(Notice::Block(ip, until)) => guard.block_local(ip, until),
                        Some(Notice::Reclaim(user, epoch)) => billing.reclaim_requested(user, epoch),
                        None => tracing::warn!("ignored an unknown notice on the events channel"),
                    }
                }
                Ok::<(), SessionError>(())
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = generation.changed() => continue,
                result = session => {
                    if let Err(err) = result {
                        // Once per outage, not every half second.
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %crate::error::chain(&err), "events subscription lost; reconnecting");
                        }
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct BroadcastStats {
    /// Notices received from the events channel.
    pub received: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("timed out connecting")]
    Timeout,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        for n in [
            Notice::Key(vec![0, 1, 254, 255]),
            Notice::Account(UserId::random()),
            Notice::Block("203.0.113.7/32".parse().unwrap(), 1_800_000_000_000),
            Notice::Block("2001:db8::/48".parse().unwrap(), 5),
            Notice::Reclaim(UserId::random(), 42),
        ] {
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
        assert_eq!(Notice::decode("nonsense"), None);
        assert_eq!(Notice::decode("key:abc"), None);
    }
}
