//! This node's in-memory credit state: one lease book per key, a balance view per user.
//! Invariant: a book is only changed under its own mutex, never across an `.await`, and it holds
//! nothing after its lease's local deadline (which falls before the database's expiry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use layers_domain::credit::LeaseBook;
use layers_domain::{KeyId, UserId};
use tokio::time::Instant;
use uuid::Uuid;

/// What this node believes about a user's balance, for `x-layers-credits-remaining`.
#[derive(Debug, Default)]
pub(crate) struct UserCredit {
    /// Ledger balance as last reported by the database.
    pub balance: AtomicI64,
    /// Held and settled-but-unflushed on this node, summed over the user's keys.
    pub pending: AtomicI64,
    /// Until when (ms on the registry's clock) this node leases only what each request needs:
    /// the account is near its end, or another node asked for its credit back.
    pub tight_until_ms: AtomicU64,
    /// The latest reclaim of the account this node answered.
    pub reclaim_answered: AtomicI64,
}

impl UserCredit {
    /// Approximately what is still available to the user.
    pub fn remaining(&self) -> i64 {
        (self.balance.load(Ordering::Relaxed) - self.pending.load(Ordering::Relaxed)).max(0)
    }
}

#[derive(Debug)]
pub(crate) struct Book {
    pub book: LeaseBook,
    /// The lease this node holds for the key (created on first grant).
    pub lease_id: Uuid,
    /// Whether the database has a lease under `lease_id`.
    pub leased_once: bool,
    /// Size of the last refill, grown while refills come quickly.
    pub block: i64,
    pub last_refill: Option<Instant>,
    pub last_active: Instant,
    /// After this instant the lease may have expired in the database (its last grant or renewal
    /// was sent this long before its TTL ran out): no hold is placed on it until renewed.
    pub valid_until: Option<Instant>,
}

impl Book {
    /// Whether holds may be placed on the lease now.
    pub fn usable(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|t| now < t)
    }

    /// The database extended the lease's expiry by a call sent at `sent`.
    pub fn extended(&mut self, sent: Instant, ttl: std::time::Duration) {
        let until = sent + local_lifetime(ttl);
        self.valid_until = Some(self.valid_until.map_or(until, |t| t.max(until)));
    }
}

/// How long after a grant or renewal was sent this node still spends its lease: two thirds of
/// the TTL, so a node cut off from the database stops a third of a TTL before the database
/// could reap the lease (and renewals, every third of a TTL, keep a healthy lease usable).
pub(crate) fn local_lifetime(ttl: std::time::Duration) -> std::time::Duration {
    ttl * 2 / 3
}

/// One key's state on this node.
#[derive(Debug)]
pub(crate) struct KeyAccount {
    pub user: UserId,
    pub key: KeyId,
    pub credit: Arc<UserCredit>,
    pub book: Mutex<Book>,
    /// One refill at a time per key; the others wait and re-check.
    pub refill: tokio::sync::Mutex<()>,
}

impl KeyAccount {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // A poisoned book still holds consistent numbers: every change is a few assignments.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    keys: RwLock<HashMap<KeyId, Arc<KeyAccount>>>,
    users: RwLock<HashMap<UserId, Arc<UserCredit>>>,
    epoch: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { keys: RwLock::default(), users: RwLock::default(), epoch: Instant::now() }
    }
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the user's books lease only what each request needs.
    pub fn is_tight(&self, credit: &UserCredit) -> bool {
        credit.tight_until_ms.load(Ordering::Relaxed) > self.now_ms()
    }

    pub fn tighten(&self, credit: &UserCredit, for_how_long: std::time::Duration) {
        let until = self.now_ms().saturating_add(u64::try_from(for_how_long.as_millis()).unwrap_or(u64::MAX));
        credit.tight_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// The books this node has for the user's keys.
    pub fn of_user(&self, user: UserId) -> Vec<Arc<KeyAccount>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).values().filter(|a| a.user == user).cloned().collect()
    }

    pub fn account(&self, user: UserId, key: KeyId) -> Arc<KeyAccount> {
        if let Some(a) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return a.clone();
        }
        let credit = {
            let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
            users.entry(user).or_default().clone()
        };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.entry(key)
            .or_insert_with(|| {
                Arc::new(KeyAccount {
                    user,
                    key,
                    credit,
                    book: Mutex::new(Book {
                        book: LeaseBook::default(),
                        lease_id: Uuid::now_v7(),
                        leased_once: false,
                        block: 0,
                        last_refill: None,
                        last_active: Instant::now(),
                        valid_until: None,
                    }),
                    refill: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<KeyAccount>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Forgets a key idle for `after` with nothing held, unflushed or leased, and that nobody
    /// else references (checked under the write lock, so no reservation can be racing).
    pub fn forget_idle(&self, key: KeyId, after: std::time::Duration) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let idle = keys.get(&key).is_some_and(|a| {
            let b = a.lock();
            Arc::strong_count(a) == 1
                && b.book.lease == 0
                && b.book.held == 0
                && b.book.unflushed == 0
                && b.last_active.elapsed() >= after
        });
        if idle {
            if let Some(removed) = keys.remove(&key) {
                let user = removed.user;
                drop(removed);
                // The user's balance view goes too once no key of it is left here.
                let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
                if users.get(&user).is_some_and(|c| Arc::strong_count(c) == 1) {
                    users.remove(&user);
                }
            }
        }
    }
}
