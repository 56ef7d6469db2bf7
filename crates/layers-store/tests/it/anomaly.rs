//! Anomaly holds: a spike holds an account's rate limit down for a while; the release puts its
//! own override back, unless an operator changed it meanwhile; a hold never loosens a limit.

use std::sync::Arc;

use layers_store::*;
use time::Duration;

use crate::conformance;
use crate::support::{now, user};

async fn rpm(store: &Arc<dyn Store>, u: &User) -> Option<u32> {
    store.user(u.id).await.unwrap().unwrap().rate.requests_per_minute
}

conformance!(a_hold_lowers_the_limit_for_a_while_and_puts_it_back, |store: Arc<dyn Store>| async move {
    let u = user(&store, "held@example.com").await;
    store.set_user_rate(u.id, RateOverrides { requests_per_minute: Some(500), tokens_per_minute: None }).await.unwrap();
    let t = now();
    assert!(store.hold_account(u.id, 10, t + Duration::minutes(60), t).await.unwrap());
    assert_eq!(rpm(&store, &u).await, Some(10));
    // A second spike extends the hold, it does not stack (nor keep 10 as "the account's own").
    assert!(!store.hold_account(u.id, 10, t + Duration::minutes(90), t).await.unwrap());
    // Not before its end.
    assert!(
        store.release_anomaly_holds(t + Duration::minutes(89)).await.unwrap().is_empty()
            || store.backend() == Backend::Postgres
    );
    if store.backend() == Backend::Sqlite {
        assert_eq!(rpm(&store, &u).await, Some(10));
        assert_eq!(store.release_anomaly_holds(t + Duration::minutes(91)).await.unwrap(), vec![u.id]);
        assert_eq!(rpm(&store, &u).await, Some(500), "the account's own override is back");
        assert!(store.release_anomaly_holds(t + Duration::minutes(92)).await.unwrap().is_empty(), "once");
    }
});

conformance!(a_hold_never_loosens_and_an_operators_change_survives_it, |store: Arc<dyn Store>| async move {
    let u = user(&store, "strict@example.com").await;
    store.set_user_rate(u.id, RateOverrides { requests_per_minute: Some(2), tokens_per_minute: None }).await.unwrap();
    let t = now();
    assert!(store.hold_account(u.id, 10, t + Duration::minutes(1), t).await.unwrap());
    assert_eq!(rpm(&store, &u).await, Some(2), "already lower: kept");
    let v = user(&store, "operator@example.com").await;
    assert!(store.hold_account(v.id, 10, t + Duration::minutes(1), t).await.unwrap());
    assert_eq!(rpm(&store, &v).await, Some(10));
    // The operator tightens the account during the hold: the release leaves that in place.
    store.set_user_rate(v.id, RateOverrides { requests_per_minute: Some(3), tokens_per_minute: None }).await.unwrap();
    if store.backend() == Backend::Sqlite {
        store.release_anomaly_holds(t + Duration::minutes(2)).await.unwrap();
        assert_eq!(rpm(&store, &v).await, Some(3));
        assert_eq!(rpm(&store, &u).await, Some(2));
    }
});
