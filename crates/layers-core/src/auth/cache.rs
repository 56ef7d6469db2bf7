//! The authentication cache: positive and negative, bounded, with a TTL. Invariant: a key whose
//! state changed is dropped from here by the invalidation feed, so a revoked key is never served
//! from the cache beyond the feed's delay. Unknown keys are remembered apart, in a smaller
//! cache, so a flood of guessed keys cannot push the keys of paying users out.
//! A key read from the database more than [`REVOCATION_BOUND`] ago is trusted only while the
//! feed has been read since then: when the feed fails, keys are re-checked in the database
//! instead of being served for the whole TTL.

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

/// A revoked key is refused on every node within this (SPEC §3: one second).
pub const REVOCATION_BOUND: Duration = Duration::from_millis(900);

#[derive(Clone, Debug)]
struct Slot {
    value: Cached,
    at: Instant,
}

#[derive(Debug)]
pub struct KeyCache {
    slots: Cache<KeyHash, Slot>,
    /// Hashes the database did not know, and when it said so.
    misses: Cache<KeyHash, Instant>,
    /// Hashes that were valid keys at some point: permission to look them up again even from a
    /// blocked network (never to serve them without a lookup).
    were_valid: Cache<KeyHash, ()>,
    ttl: Duration,
    /// Milliseconds after `origin` at which the last successful read of the feed started.
    feed_read: AtomicU64,
    origin: Instant,
    /// Bumped by every invalidation. A lookup that started before a bump does not insert what
    /// it read, so a revocation racing a database read cannot leave a stale entry behind.
    epoch: AtomicU64,
}

impl KeyCache {
    pub fn new(capacity: usize, ttl: Duration) -> KeyCache {
        let negative = (capacity / 8).clamp(1_024, 65_536);
        KeyCache {
            slots: Cache::new(capacity.max(16)),
            misses: Cache::new(negative),
            were_valid: Cache::new(capacity.max(16)),
            ttl,
            feed_read: AtomicU64::new(0),
            origin: Instant::now(),
            epoch: AtomicU64::new(0),
        }
    }

    /// The feed was read successfully by a poll that started at `started`.
    pub fn feed_read(&self, started: Instant) {
        let ms = started.saturating_duration_since(self.origin).as_millis() as u64;
        self.feed_read.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long ago the last successful read of the feed started.
    pub fn feed_lag(&self, now: Instant) -> Duration {
        let read = self.origin + Duration::from_millis(self.feed_read.load(Ordering::Acquire));
        now.saturating_duration_since(read)
    }

    /// A fresh entry for this hash, if any.
    pub fn get(&self, hash: &KeyHash, now: Instant) -> Option<Cached> {
        let Some(slot) = self.slots.get(hash) else {
            let at = self.misses.get(hash)?;
            if now.saturating_duration_since(at) > self.ttl {
                self.misses.remove(hash);
                return None;
            }
            return Some(Cached::Missing);
        };
        if now.saturating_duration_since(slot.at) > self.ttl {
            self.slots.remove(hash);
            return None;
        }
        let verified = now.saturating_duration_since(slot.at).min(self.feed_lag(now));
        if verified > REVOCATION_BOUND {
            // Neither read nor confirmed by the feed lately: look again.
            return None;
        }
        Some(slot.value)
    }

    /// A cached key however long since it was confirmed, for when the database cannot be
    /// asked: it is also where a revocation would have to be written.
    pub fn get_unconfirmed(&self, hash: &KeyHash, now: Instant) -> Option<Arc<KeyAuthRecord>> {
        let slot = self.slots.get(hash)?;
        match slot.value {
            Cached::Found(record) if now.saturating_duration_since(slot.at) <= self.ttl => Some(record),
            _ => None,
        }
    }

    /// Read before a database lookup, passed back to [`KeyCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches what a lookup found, unless an invalidation happened since `epoch` was read.
    pub fn insert(&self, hash: KeyHash, value: Cached, now: Instant, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        match value {
            Cached::Missing => self.misses.insert(hash, now),
            found => {
                self.were_valid.insert(hash, ());
                self.slots.insert(hash, Slot { value: found, at: now });
            }
        }
    }

    /// Whether this hash was a valid key when last looked up on this node.
    pub fn was_valid(&self, hash: &KeyHash) -> bool {
        self.were_valid.get(hash).is_some()
    }

    pub fn remove(&self, hash: &[u8]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(hash) = KeyHash::try_from(hash) {
            self.slots.remove(&hash);
            self.misses.remove(&hash);
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
        self.misses.clear();
    }
}
