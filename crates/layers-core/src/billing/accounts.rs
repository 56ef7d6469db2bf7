//! This node's in-memory credit state: one lease book per key, a balance view per user.
//! Invariant: a book is only changed under its own mutex, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
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

#[derive(Debug, Default)]
pub(crate) struct Registry {
    keys: RwLock<HashMap<KeyId, Arc<KeyAccount>>>,
    users: RwLock<HashMap<UserId, Arc<UserCredit>>>,
}

impl Registry {
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
