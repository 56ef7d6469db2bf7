//! The authentication cache: positive and negative, bounded, with a TTL. Invariant: a key whose
//! state changed is dropped from here by the invalidation feed, so a revoked key is never served
//! from the cache beyond the feed's delay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::UserId;
use layers_store::KeyAuthRecord;
use quick_cache::sync::Cache;
use tokio::time::Instant;

use super::pepper::KeyHash;

/// What the cache remembers about one key hash.
#[derive(Clone, Debug)]
pub enum Cached {
    Found(Arc<KeyAuthRecord>),
    Missing,
}

#[derive(Clone, Debug)]
struct Slot {
    value: Cached,
    at: Instant,
}

#[derive(Debug)]
pub struct KeyCache {
    slots: Cache<KeyHash, Slot>,
    ttl: Duration,
    /// Bumped by every invalidation. A lookup that started before a bump does not insert what
    /// it read, so a revocation racing a database read cannot leave a stale entry behind.
    epoch: AtomicU64,
}

impl KeyCache {
    pub fn new(capacity: usize, ttl: Duration) -> KeyCache {
        KeyCache { slots: Cache::new(capacity.max(16)), ttl, epoch: AtomicU64::new(0) }
    }

    /// A fresh entry for this hash, if any.
    pub fn get(&self, hash: &KeyHash, now: Instant) -> Option<Cached> {
        let slot = self.slots.get(hash)?;
        if now.saturating_duration_since(slot.at) > self.ttl {
            self.slots.remove(hash);
            return None;
        }
        Some(slot.value)
    }

    /// Read before a database lookup, passed back to [`KeyCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches what a lookup found, unless an invalidation happened since `epoch` was read.
    pub fn insert(&self, hash: KeyHash, value: Cached, now: Instant, epoch: u64) {
        if self.epoch() == epoch {
            self.slots.insert(hash, Slot { value, at: now });
        }
    }

    pub fn remove(&self, hash: &[u8]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(hash) = KeyHash::try_from(hash) {
            self.slots.remove(&hash);
        }
    }

    /// Drops every key of one account (its tier or status changed).
    pub fn remove_user(&self, user: UserId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.slots.retain(|_, slot| !matches!(&slot.value, Cached::Found(r) if r.key.user_id == user));
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.slots.clear();
    }
}
