use std::sync::Arc;

use layers_domain::{KeyEnv, KeyId, Tier};
use layers_store::{CacheScope, KeyState, Store, StoreError, UserStatus};
use time::Duration;

use crate::conformance;
use crate::support::{key, now, user};

conformance!(keys_are_found_by_hash_with_their_owner, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    store.set_tier(alice.id, Tier::Starter).await.unwrap();
    let k = key(&store, &alice, 7).await;
    assert_eq!(k.env, KeyEnv::Live);
    assert_eq!(k.state, KeyState::Active);
    let auth = store.key_for_auth(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(auth.key, k);
    assert_eq!(auth.tier, Tier::Starter);
    assert_eq!(auth.user_status, UserStatus::Active);
    assert!(store.key_for_auth(&[8; 32]).await.unwrap().is_none());
});

conformance!(duplicate_hashes_conflict, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    key(&store, &alice, 1).await;
    let dup = store
        .insert_key(&layers_store::NewKey {
            id: KeyId::random(),
            user_id: alice.id,
            name: "dup".into(),
            env: KeyEnv::Test,
            key_hash: vec![1; 32],
            pepper_version: 1,
            display_prefix: "lyr_test_sk_zzzz".into(),
            last4: "zzzz".into(),
            spend_limit: None,
            limit_period: Default::default(),
            expires_at: None,
            created_at: now(),
        })
        .await
        .unwrap_err();
    assert!(dup.is_conflict_on("api_keys_key_hash_key"), "{dup:?}");
});

conformance!(listing_and_prefix_lookup, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let a1 = key(&store, &alice, 1).await;
    let a2 = key(&store, &alice, 2).await;
    let b1 = key(&store, &bob, 3).await;
    let mut ids: Vec<_> = store.keys_of_user(alice.id).await.unwrap().into_iter().map(|k| k.id).collect();
    ids.sort();
    let mut want = vec![a1.id, a2.id];
    want.sort();
    assert_eq!(ids, want);
    let by_prefix = store.keys_by_prefix(&b1.display_prefix).await.unwrap();
    assert_eq!(by_prefix, vec![b1]);
    assert!(store.keys_by_prefix("lyr_live_sk_none").await.unwrap().is_empty());
});

conformance!(state_changes_are_scoped_and_announced, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let k = key(&store, &alice, 9).await;
    let since = store.db_now().await.unwrap() - Duration::seconds(1);
    // Bob cannot deactivate Alice's key.
    let err = store.set_key_state(bob.id, k.id, KeyState::Deactivated).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let updated = store.set_key_state(alice.id, k.id, KeyState::Deactivated).await.unwrap();
    assert_eq!(updated.state, KeyState::Deactivated);
    let auth = store.key_for_auth(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(auth.key.state, KeyState::Deactivated);
    let events = store.cache_events_since(since).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scope, CacheScope::Key);
    assert_eq!(events[0].key_hash.as_deref(), Some(&[9u8; 32][..]));
    // Events older than `since` are not returned again.
    let later = events[0].created_at;
    assert!(store.cache_events_since(later).await.unwrap().is_empty());
});

conformance!(last_used_only_moves_forward, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let k = key(&store, &alice, 4).await;
    let t1 = now();
    let t0 = t1 - Duration::minutes(5);
    store.touch_keys(&[(k.id, t1)]).await.unwrap();
    store.touch_keys(&[(k.id, t0)]).await.unwrap();
    let listed = store.keys_of_user(alice.id).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(t1));
});
