use std::sync::Arc;

use layers_domain::{Tier, UserId};
use layers_store::{NewUser, Store, UserStatus};

use crate::conformance;
use crate::support::{now, user};

conformance!(users_are_created_found_and_updated, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    assert_eq!(alice.tier, Tier::Free);
    assert_eq!(alice.status, UserStatus::Active);
    let found = store.user_by_email("alice@example.com").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert!(store.user_by_email("nobody@example.com").await.unwrap().is_none());
    assert_eq!(store.balance(alice.id).await.unwrap().0, 0);

    store.set_tier(alice.id, Tier::Pro).await.unwrap();
    store.set_user_status(alice.id, UserStatus::Suspended).await.unwrap();
    let updated = store.user(alice.id).await.unwrap().unwrap();
    assert_eq!((updated.tier, updated.status), (Tier::Pro, UserStatus::Suspended));
    assert!(store.set_tier(UserId::random(), Tier::Pro).await.is_err());
});

conformance!(duplicate_emails_conflict_by_constraint_name, |store: Arc<dyn Store>| async move {
    user(&store, "bob@example.com").await;
    let err = store
        .create_user(&NewUser {
            id: UserId::random(),
            email: "bob@example.com".into(),
            tier: Tier::Free,
            created_at: now(),
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict_on("users_email_key"), "{err:?}");
});

conformance!(account_changes_reach_the_cache_feed, |store: Arc<dyn Store>| async move {
    let since = store.db_now().await.unwrap() - time::Duration::seconds(1);
    let carol = user(&store, "carol@example.com").await;
    store.set_tier(carol.id, Tier::Team).await.unwrap();
    let events = store.cache_events_since(since).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scope, layers_store::CacheScope::Account);
    assert_eq!(events[0].user_id, carol.id);
});

conformance!(rate_overrides_are_stored_and_reach_authentication, |store: Arc<dyn Store>| async move {
    let dana = user(&store, "dana@example.com").await;
    assert_eq!(dana.rate, layers_store::RateOverrides::default());
    let k = crate::support::key(&store, &dana, 42).await;
    let rate = layers_store::RateOverrides { requests_per_minute: Some(5), tokens_per_minute: Some(90_000) };
    store.set_user_rate(dana.id, rate).await.unwrap();
    assert_eq!(store.user(dana.id).await.unwrap().unwrap().rate, rate);
    let auth = store.key_for_auth(&k.key_hash).await.unwrap().unwrap();
    assert_eq!(auth.account_rate, rate);
});
