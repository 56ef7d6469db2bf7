//! Admission batches for hot keys: a node that sees a key often asks Redis for several slots of
//! the key's window at once and admits from them without a round trip. Invariant: it stays
//! exact — Redis counts every granted slot from the grant until `grant time + LEASE_MS +
//! window`, and a node uses a slot only before `grant request sent + LEASE_MS`, so a slot is
//! counted for at least a full window after its real admission; slots left unused are given
//! back. Batches are only granted while the key has ample room (see the script), so near its
//! limit every request is decided by Redis one by one.

use std::collections::HashMap;
use std::sync::Mutex;

use layers_domain::KeyId;

/// How long a batch may be used.
pub(super) const LEASE_MS: u64 = 200;
/// A key is hot on this node from this many admissions a second.
const HOT_PER_SEC: u32 = 20;
const MAX_WANT: u32 = 10_000;
const SHARDS: usize = 16;

/// Slots of one key granted to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SlotLease {
    pub key: KeyId,
    /// The members are `{member}.1` … `{member}.{granted}` in the key's window.
    pub member: String,
    pub granted: u32,
    pub used: u32,
    /// Last moment (node clock, ms) a slot may be used.
    pub deadline_ms: u64,
    /// What Redis said remained for everyone after this grant.
    pub remaining_after: u32,
}

#[derive(Debug, Default)]
struct KeyState {
    leases: Vec<SlotLease>,
    second: u64,
    this_second: u32,
    last_second: u32,
    /// A request of this node is asking Redis for a batch of this key right now.
    fetching: bool,
}

impl KeyState {
    fn note(&mut self, now_ms: u64) {
        let second = now_ms / 1_000;
        if second != self.second {
            self.last_second = if second == self.second + 1 { self.this_second } else { 0 };
            self.second = second;
            self.this_second = 0;
        }
        self.this_second = self.this_second.saturating_add(1);
    }
}

#[derive(Debug)]
pub(super) struct Batches {
    shards: Vec<Mutex<HashMap<KeyId, KeyState>>>,
}

impl Default for Batches {
    fn default() -> Self {
        Batches { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl Batches {
    fn shard(&self, key: KeyId) -> std::sync::MutexGuard<'_, HashMap<KeyId, KeyState>> {
        let i = (key.0.as_u128() % SHARDS as u128) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot of a live batch; returns the remaining count to show, or `None`.
    pub fn take(&self, key: KeyId, now_ms: u64) -> Option<u32> {
        let mut shard = self.shard(key);
        let state = shard.get_mut(&key)?;
        let lease = state.leases.iter_mut().find(|l| l.used < l.granted && now_ms <= l.deadline_ms)?;
        lease.used += 1;
        let remaining = lease.remaining_after.saturating_add(lease.granted - lease.used);
        state.note(now_ms);
        Some(remaining)
    }

    /// Counts a request that goes to Redis and says how many slots to ask for: one, unless the
    /// key is hot here, then about one batch lifetime of its current rate. Only one request per
    /// key and node asks for a batch at a time (the others ask for one slot meanwhile), so a
    /// burst of concurrent requests does not fetch a batch each; the returned guard ends that
    /// turn however the request ends.
    pub fn want(&self, key: KeyId, now_ms: u64) -> (u32, Option<Fetching<'_>>) {
        let mut shard = self.shard(key);
        let state = shard.entry(key).or_default();
        state.note(now_ms);
        let rate = state.last_second.max(state.this_second);
        if rate < HOT_PER_SEC || state.fetching {
            return (1, None);
        }
        state.fetching = true;
        let per_lease = u64::from(rate) * LEASE_MS / 1_000;
        let want = u32::try_from(per_lease).unwrap_or(MAX_WANT).clamp(2, MAX_WANT);
        (want, Some(Fetching { batches: self, key }))
    }

    /// Keeps a batch Redis granted (its first slot already used by the request that asked).
    pub fn store(&self, lease: SlotLease) {
        self.shard(lease.key).entry(lease.key).or_default().leases.push(lease);
    }

    /// Removes the batches that can no longer be used and returns those with unused slots (to
    /// give back); forgets keys quiet for a while.
    pub fn expired(&self, now_ms: u64) -> Vec<SlotLease> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for state in map.values_mut() {
                let (done, live): (Vec<_>, Vec<_>) =
                    state.leases.drain(..).partition(|l| l.used >= l.granted || now_ms > l.deadline_ms);
                state.leases = live;
                out.extend(done.into_iter().filter(|l| l.used < l.granted));
            }
            map.retain(|_, s| !s.leases.is_empty() || s.second + 2 >= now_ms / 1_000);
        }
        out
    }

    fn fetched(&self, key: KeyId) {
        if let Some(state) = self.shard(key).get_mut(&key) {
            state.fetching = false;
        }
    }

    /// Every batch, to give back at shutdown.
    pub fn drain(&self) -> Vec<SlotLease> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for state in map.values_mut() {
                out.extend(state.leases.drain(..).filter(|l| l.used < l.granted));
            }
        }
        out
    }
}

/// The turn of the one request asking Redis for a key's batch; ends when dropped.
#[derive(Debug)]
pub(super) struct Fetching<'a> {
    batches: &'a Batches,
    key: KeyId,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        self.batches.fetched(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: KeyId, granted: u32, deadline_ms: u64) -> SlotLease {
        SlotLease { key, member: "m".into(), granted, used: 1, deadline_ms, remaining_after: 50 }
    }

    #[test]
    fn slots_are_used_until_the_deadline_then_given_back() {
        let b = Batches::default();
        let key = KeyId::random();
        assert_eq!(b.take(key, 0), None);
        b.store(lease(key, 3, 200));
        assert_eq!(b.take(key, 100), Some(51));
        assert_eq!(b.take(key, 200), Some(50));
        assert_eq!(b.take(key, 200), None, "all three used");
        b.store(lease(key, 5, 400));
        assert_eq!(b.take(key, 401), None, "past its deadline");
        let back = b.expired(401);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].granted, back[0].used), (5, 1));
        assert!(b.expired(402).is_empty());
    }

    #[test]
    fn only_hot_keys_ask_for_batches() {
        let b = Batches::default();
        let key = KeyId::random();
        for i in 0..19 {
            assert_eq!(b.want(key, i).0, 1);
        }
        // The twentieth request of the second makes the key hot: 20/s × 0.2 s = 4 slots.
        let (want, turn) = b.want(key, 20);
        assert_eq!(want, 4);
        assert!(turn.is_some());
        drop(turn);
        // A quiet second later it is cold again.
        assert_eq!(b.want(key, 5_000).0, 1);
    }

    #[test]
    fn one_batch_request_at_a_time_per_key() {
        let b = Batches::default();
        let key = KeyId::random();
        for i in 0..20 {
            let _ = b.want(key, i);
        }
        let (first, turn) = b.want(key, 30);
        assert!(first > 1);
        // Concurrent requests meanwhile ask for one slot each.
        assert_eq!(b.want(key, 31).0, 1);
        assert_eq!(b.want(key, 32).0, 1);
        // However the first ends (here: dropped without a grant), the next may ask again.
        drop(turn);
        assert!(b.want(key, 33).0 > 1);
    }
}
