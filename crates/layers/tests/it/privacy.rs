//! Privacy (issue 16, SPEC §8.5): usage detail is pruned after the retention period, and the
//! ledger, the spend and the audit trail stay.

use std::time::Duration;

use layers_domain::KeyEnv;
use layers_testkit::{AppOptions, Backend, MockOpenAi, TestApp};

use crate::billing::{exact, EXACT_MODEL};

async fn retention(backend: Backend) {
    let mock = MockOpenAi::start().await;
    let mut opts =
        AppOptions::default().with_mock(&mock).config(EXACT_MODEL).config("[privacy]\nusage_retention_days = 30");
    opts.backend = backend;
    let Some(app) = TestApp::spawn_with(opts).await else { return };
    let (user, key) = app.user_with_key("kept@example.com", "5").await;
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &exact()).send().await.unwrap().status(), 200);
    }
    app.wait_for_usage(&user, 3).await;
    let balance = app.store().balance(user.id).await.unwrap();
    let ledger = app.store().transactions(user.id, 100).await.unwrap();
    let audit = app.store().audit_events(user.id, 100).await.unwrap().len();
    // Nothing is old enough yet.
    assert_eq!(app.core.prune_usage(Duration::from_secs(30 * 86_400)).await.unwrap(), 0);
    // The three requests are 31 days old now; a new one comes; the old ones go, it stays.
    app.db.age_account(user.id, 31).await;
    let other = app.create_key(&user, KeyEnv::Live).await;
    assert_eq!(app.chat(&other, &exact()).send().await.unwrap().status(), 200);
    app.wait_for_usage(&user, 4).await;
    assert_eq!(app.core.prune_usage(Duration::from_secs(30 * 86_400)).await.unwrap(), 3);
    let left = app.store().recent_usage(user.id, 100, None).await.unwrap();
    assert_eq!(left.len(), 1, "only the recent request's detail is kept");
    // The ledger (every debit), the balance and the audit trail are untouched.
    assert_eq!(app.store().transactions(user.id, 100).await.unwrap().len(), ledger.len() + 1);
    assert!(app.store().balance(user.id).await.unwrap() < balance);
    assert_eq!(app.store().ledger_sum(user.id).await.unwrap(), app.store().balance(user.id).await.unwrap());
    assert!(app.store().audit_events(user.id, 100).await.unwrap().len() > audit);
}

#[tokio::test]
async fn usage_detail_is_pruned_after_the_retention_period_on_sqlite() {
    retention(Backend::Sqlite).await;
}

#[tokio::test]
async fn usage_detail_is_pruned_after_the_retention_period_on_postgres() {
    retention(Backend::Postgres).await;
}
