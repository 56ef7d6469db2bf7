//! The database off the hot path (issue 11, items 5 to 7): a node cut off from PostgreSQL keeps
//! serving what its leases cover and refuses the rest at once, stops spending a lease before the
//! database could reap it, loses no settlement through a shutdown, and slows admission rather
//! than let unwritten settlements grow. Each node reaches PostgreSQL through a proxy the test cuts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::MicroCredits;
use layers_store::testing::TestDatabase;
use layers_store::{ConnectOptions, LeaseState, Store, TransactionKind, User};
use layers_testkit::tcp_proxy::TcpProxy;
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::json;

use crate::billing::PRICED_MODEL;

const NO_RATE_LIMITS: &str = "[tiers.pro]\nrequests_per_minute = 1000000";

/// A fresh PostgreSQL database, migrated, and a proxy in front of its server.
async fn database() -> Option<(TestDatabase, TcpProxy, String)> {
    let db = TestDatabase::postgres().await?;
    db.store().await.close().await;
    let target = host_port(&db.url);
    let proxy = TcpProxy::start(target.parse().unwrap()).await;
    let proxied = db.url.replace(&target, &proxy.host_port());
    Some((db, proxy, proxied))
}

fn host_port(url: &str) -> String {
    let after = url.split('@').nth(1).unwrap();
    after.split('/').next().unwrap().to_owned()
}

async fn node(url: &str, mock: &MockOpenAi, extra: &str) -> TestApp {
    node_in(url, mock, extra, None).await
}

async fn node_in(url: &str, mock: &MockOpenAi, extra: &str, dir: Option<&std::path::Path>) -> TestApp {
    let mut opts =
        AppOptions::default().database_at(url, true).with_mock(mock).config(PRICED_MODEL).config(NO_RATE_LIMITS);
    opts = opts.config(extra);
    if let Some(dir) = dir {
        opts = opts.data_dir(dir);
    }
    TestApp::spawn_with(opts).await.unwrap()
}

/// Eight requests: the key is cached and its lease has grown with a few quick refills.
async fn warm(app: &TestApp, key: &str) {
    for _ in 0..8 {
        assert_eq!(app.chat(key, &counted()).send().await.unwrap().status(), 200);
    }
}

/// Eight requests served, waiting out the refusals of a node that has just seen the database
/// come back: how many requests were served.
async fn warm_after_outage(app: &TestApp, key: &str) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut served = 0;
    while served < 8 {
        assert!(tokio::time::Instant::now() < deadline, "the node never served again");
        match app.chat(key, &counted()).send().await.unwrap().status().as_u16() {
            200 => served += 1,
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected {other}"),
        }
    }
    served
}

/// `n` requests while the database is away: how many were served from the lease.
async fn served_while_away(app: &TestApp, key: &str, n: usize) -> usize {
    let mut served = 0;
    for _ in 0..n {
        if app.chat(key, &counted()).send().await.unwrap().status() == 200 {
            served += 1;
        }
    }
    served
}

fn counted() -> serde_json::Value {
    json!({"model": "mock/priced", "max_tokens": 100, "messages": [{"role": "user", "content": "mock:tokens=100"}]})
}

async fn owner(db: &TestDatabase) -> Arc<dyn Store> {
    layers_store::connect(&ConnectOptions { url: db.url.clone(), max_connections: 2, app_role: None }).await.unwrap()
}

/// Balance = ledger ≥ 0, nothing leased once `settled`, one debit per charged row, and the
/// number of usage rows.
async fn invariants(store: &Arc<dyn Store>, user: &User, settled: bool) -> (MicroCredits, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = store.credit_state(user.id).await.unwrap();
        if !settled || state.leased.0 == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "credit still leased: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = store.credit_state(user.id).await.unwrap();
    assert!(state.balance.0 >= 0, "I1: {state:?}");
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), state.balance, "I2");
    let rows = store.recent_usage(user.id, 100_000, None).await.unwrap();
    let debits: Vec<_> = store
        .transactions(user.id, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TransactionKind::Usage)
        .collect();
    assert_eq!(rows.iter().filter(|r| r.charged.is_positive()).count(), debits.len(), "I3: one debit per charge");
    assert_eq!(rows.iter().map(|r| r.charged.0).sum::<i64>(), -debits.iter().map(|d| d.amount.0).sum::<i64>());
    (state.balance, rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_lease_covers_are_served_while_the_database_is_away_and_the_rest_refused_at_once() {
    let Some((db, proxy, url)) = database().await else { return };
    let mock = MockOpenAi::start().await;
    let app = node(&url, &mock, "").await;
    let (user, key) = app.user_with_key("away@example.com", "100").await;
    warm(&app, &key).await;
    proxy.cut();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..40 {
        let resp = app.chat(&key, &counted()).send().await.unwrap();
        match resp.status().as_u16() {
            200 => served += 1,
            503 => {
                assert!(resp.headers().get("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    println!("database away: {served} served from the lease, {refused} refused");
    assert!(served > 0, "the lease's credit is still spent while the database is away");
    assert!(refused > 0, "past the lease, requests are refused, not stalled");
    proxy.restore();
    let store = owner(&db).await;
    let (balance, rows) = invariants(&store, &user, false).await;
    // Everything served while away is written once the database answers again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.core.billing.sink().backlog() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the backlog never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (balance_after, rows_after) = invariants(&store, &user, false).await;
    assert!(rows_after >= rows && balance_after <= balance);
    assert_eq!(rows_after, 8 + served, "one row per request served");
    assert_eq!(balance_after, MicroCredits(100_000_000 - rows_after as i64 * 50_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_for_longer_than_its_lease_ttl_cannot_overspend() {
    let Some((db, proxy, url)) = database().await else { return };
    let mock = MockOpenAi::start().await;
    mock.latency(2, 10);
    let fast = "[billing]\nlease_ttl_secs = 3\nreaper_interval_secs = 1\nidle_release_ms = 60000";
    let mut a = node(&url, &mock, fast).await;
    let mut b = node(&db.url, &mock, fast).await;
    let (user, key) = a.user_with_key("partition@example.com", "100").await;
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for app in [a.url.clone(), b.url.clone()] {
        let (served, stop, key) = (served.clone(), stop.clone(), key.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let resp =
                    client.post(format!("{app}/v1/chat/completions")).bearer_auth(&key).json(&counted()).send().await;
                if resp.is_ok_and(|r| r.status() == 200) {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // A serves from its lease while it is still valid by A's own clock. The load on both nodes
    // may have just spent A's lease when the cut comes: then reconnect and cut again.
    let mut away = 0;
    for _ in 0..5 {
        served.fetch_add(warm_after_outage(&a, &key).await, Ordering::Relaxed);
        proxy.cut();
        away = served_while_away(&a, &key, 3).await;
        served.fetch_add(away, Ordering::Relaxed);
        if away > 0 {
            break;
        }
        proxy.restore();
    }
    assert!(away > 0, "A's lease covers requests while the database is away");
    // Longer than the TTL: B's reaper ends A's lease while A is away.
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let store = owner(&db).await;
    let (balance, rows) = invariants(&store, &user, true).await;
    let served = served.load(Ordering::Relaxed);
    println!("partition: {served} served, {rows} usage rows, balance {balance}");
    assert_eq!(rows, served, "I3: every request served has its usage row");
    let all = store.recent_usage(user.id, 100_000, None).await.unwrap();
    let charged: i64 = all.iter().map(|r| r.charged.0).sum();
    assert!(charged <= 100_000_000, "never more than the balance");
    assert_eq!(MicroCredits(100_000_000 - charged), balance);
    // What A charged against its reaped lease was refused and recorded, counted once.
    let refused = all.iter().filter(|r| r.status == 200 && r.charged.0 == 0 && r.shortfall.is_positive()).count();
    let counted_refusals = a.core.billing.stats().refused_settlements.load(Ordering::Relaxed)
        + b.core.billing.stats().refused_settlements.load(Ordering::Relaxed);
    println!("partition: {refused} settlements refused (their lease was reaped while A was away)");
    assert!(refused > 0, "A charged its lease while away and the reaper ended it meanwhile");
    assert_eq!(counted_refusals as usize, refused, "each refused settlement counted once");
    let leases = store.leases_of_user(user.id).await.unwrap();
    assert!(leases.iter().all(|l| l.state != LeaseState::Active || l.amount.0 == 0), "{leases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_out_a_database_blip_and_loses_no_settlement() {
    let Some((db, proxy, url)) = database().await else { return };
    let mock = MockOpenAi::start().await;
    let mut app = node(&url, &mock, "").await;
    let (user, key) = app.user_with_key("blip@example.com", "100").await;
    warm(&app, &key).await;
    proxy.cut();
    let served = 8 + served_while_away(&app, &key, 10).await;
    assert!(app.core.billing.sink().backlog() > 0, "settlements wait for the database");
    let restore = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
        proxy
    });
    app.stop().await.unwrap(); // SIGTERM while the database is away
    let _proxy = restore.await.unwrap();
    assert_eq!(app.core.billing.stats().journaled.load(Ordering::Relaxed), 0, "all written in time");
    let store = owner(&db).await;
    let (balance, rows) = invariants(&store, &user, true).await;
    assert_eq!(rows, served);
    assert_eq!(balance, MicroCredits(100_000_000 - served as i64 * 50_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_a_shutdown_cannot_write_are_journaled_and_written_at_the_next_start() {
    let Some((db, proxy, url)) = database().await else { return };
    let mock = MockOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let short = "[billing]\nshutdown_flush_secs = 1";
    let mut app = node_in(&url, &mock, short, Some(dir.path())).await;
    let (user, key) = app.user_with_key("journal@example.com", "100").await;
    warm(&app, &key).await;
    proxy.cut();
    let served = 8 + served_while_away(&app, &key, 10).await;
    app.stop().await.unwrap();
    let journaled = app.core.billing.stats().journaled.load(Ordering::Relaxed) as usize;
    assert!(journaled > 0, "the database stayed away past the deadline");
    assert!(dir.path().join("settlements.journal").exists());
    proxy.restore();
    let next = node_in(&url, &mock, short, Some(dir.path())).await;
    assert_eq!(next.core.billing.stats().replayed.load(Ordering::Relaxed) as usize, journaled);
    assert!(!dir.path().join("settlements.journal").exists(), "removed once written");
    let store = owner(&db).await;
    let (balance, rows) = invariants(&store, &user, true).await;
    assert_eq!(rows, served, "no settlement lost");
    assert_eq!(balance, MicroCredits(100_000_000 - served as i64 * 50_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_falls_behind_slows_admission_instead_of_growing() {
    let Some((db, proxy, url)) = database().await else { return };
    let mock = MockOpenAi::start().await;
    let app = node(&url, &mock, "[billing]\nmax_settlement_backlog = 5\nbacklog_wait_ms = 200").await;
    let (user, key) = app.user_with_key("backlog@example.com", "100").await;
    warm(&app, &key).await;
    proxy.cut();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(app.chat(&key, &counted()).send().await.unwrap().status().as_u16());
        assert!(app.core.billing.sink().backlog() <= 6, "bounded: {}", app.core.billing.sink().backlog());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    proxy.restore();
    let store = owner(&db).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.core.billing.sink().backlog() > 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, rows) = invariants(&store, &user, false).await;
    assert_eq!(rows, 8 + statuses.iter().filter(|s| **s == 200).count());
}
