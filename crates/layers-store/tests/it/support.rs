//! Test support: fixtures and the macro that runs one body on both backends.

use std::sync::Arc;

use layers_domain::{KeyEnv, KeyId, Tier, UserId};
use layers_store::{KeyRecord, NewKey, NewUser, Store, User};
use time::OffsetDateTime;

/// Runs `$body(store)` as two tests, `sqlite` and `postgres`, in a module named `$name`.
#[macro_export]
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = layers_store::testing::TestDatabase::sqlite();
                let store = db.store().await;
                ($body)(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = layers_store::testing::TestDatabase::postgres().await else { return };
                let store = db.store().await;
                ($body)(store).await;
            }
        }
    };
}

pub fn now() -> OffsetDateTime {
    // Millisecond precision, as both backends store it.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap()
}

pub async fn user(store: &Arc<dyn Store>, email: &str) -> User {
    store
        .create_user(&NewUser { id: UserId::random(), email: email.to_owned(), tier: Tier::Free, created_at: now() })
        .await
        .unwrap()
}

pub async fn key(store: &Arc<dyn Store>, user: &User, hash_byte: u8) -> KeyRecord {
    store
        .insert_key(&NewKey {
            id: KeyId::random(),
            user_id: user.id,
            name: format!("key {hash_byte}"),
            env: KeyEnv::Live,
            key_hash: vec![hash_byte; 32],
            pepper_version: 1,
            display_prefix: format!("lyr_live_sk_{hash_byte:04}"),
            last4: "abcd".to_owned(),
            spend_limit: None,
            limit_period: Default::default(),
            expires_at: None,
            created_at: now(),
        })
        .await
        .unwrap()
}
