//! The money invariants under load (issue 4's proofs): concurrency on one node and on two
//! processes, no leaks after mixed endings, and crash safety with kill -9.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use layers_domain::UserId;
use layers_domain::{MicroCredits, Tier};
use layers_store::testing::TestDatabase;
use layers_store::{ConnectOptions, LeaseState, Store, TransactionKind};
use layers_testkit::process::{layers_cmd, write_config, ServeProcess};
use layers_testkit::{AppOptions, MockOpenAi};
use serde_json::json;

use crate::billing::{app_with, at_rest, counted, exact, EXACT_COST, EXACT_MODEL, PRICED_MODEL};

const COST: i64 = 50_500;
/// Where hold = cost, exactly ⌊balance / cost⌋ requests succeed (I5).
const EXACT_SUCCESSES: usize = (1_000_000 / EXACT_COST) as usize;

/// These tests are about money, not rate limits: lift the per-minute limits out of the way.
const NO_RATE_LIMITS: &str = "[tiers.free]\nrequests_per_minute = 1000000\n[tiers.pro]\nrequests_per_minute = 1000000";

/// Fires `n` copies of a request at once and counts 200s and 402s.
async fn burst(urls: &[String], key: &str, n: usize) -> (usize, usize) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = format!("{}/v1/chat/completions", urls[i % urls.len()]);
        let (client, key) = (client.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            client.post(url).bearer_auth(key).json(&exact()).send().await.unwrap().status().as_u16()
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, refused)
}

/// Checks the ledger of a user straight from the database: balance = ledger sum ≥ 0, nothing
/// leased, one debit per charged request, charges = debits.
async fn ledger_invariants(store: &Arc<dyn Store>, user: UserId) -> (MicroCredits, usize) {
    let state = store.credit_state(user).await.unwrap();
    assert!(state.balance.0 >= 0, "{state:?}");
    assert_eq!(state.leased.0, 0, "credit still leased at rest");
    assert_eq!(store.ledger_sum(user).await.unwrap(), state.balance);
    let leases = store.leases_of_user(user).await.unwrap();
    assert!(leases.iter().all(|l| l.state != LeaseState::Active || l.amount.0 == 0), "{leases:?}");
    let usage = store.recent_usage(user, 1_000_000, None).await.unwrap();
    let debits: Vec<_> = store
        .transactions(user, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TransactionKind::Usage)
        .collect();
    // Each debit belongs to exactly one charged request (the debit carries its usage id).
    let charged: HashSet<_> = usage.iter().filter(|u| u.charged.0 > 0).map(|u| u.id).collect();
    let debited: HashSet<_> = debits.iter().map(|d| d.id).collect();
    assert_eq!(charged, debited, "debits and charged requests differ");
    assert_eq!(usage.iter().map(|u| u.charged.0).sum::<i64>(), -debits.iter().map(|d| d.amount.0).sum::<i64>());
    assert_eq!(usage.iter().filter(|u| u.charged.0 > 0).count(), debits.len());
    (state.balance, usage.len())
}

async fn one_credit_two_hundred_requests(opts: AppOptions) {
    let Some((app, mock)) = app_with(opts, "").await else { return };
    mock.latency(5, 60);
    let (user, key) = app.user_with_key("burst@example.com", "1.00").await;
    let (ok, refused) = burst(std::slice::from_ref(&app.url), &key, 200).await;
    println!("200 concurrent requests on 1.00 credit: {ok} succeeded, {refused} refused (402)");
    assert_eq!(ok, EXACT_SUCCESSES, "exactly what the balance pays for");
    assert_eq!(ok + refused, 200);
    let balance = at_rest(&app, &user).await;
    assert_eq!(balance.0, 1_000_000 - ok as i64 * EXACT_COST);
    let rows = app.wait_for_usage(&user, ok).await;
    assert_eq!(rows.len(), ok, "usage rows = successes");
    ledger_invariants(app.store(), user.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_on_sqlite() {
    one_credit_two_hundred_requests(AppOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_on_postgres() {
    one_credit_two_hundred_requests(AppOptions::default().postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_one_process_never_overspend_on_postgres() {
    let Some((a, mock)) = app_with(AppOptions::default().postgres(), "").await else { return };
    let b = layers_testkit::TestApp::spawn_with(
        AppOptions::default().second_node_of(&a).with_mock(&mock).config(PRICED_MODEL).config(EXACT_MODEL),
    )
    .await
    .unwrap();
    mock.latency(5, 60);
    let (user, key) = a.user_with_key("twonodes@example.com", "1.00").await;
    let (ok, _) = burst(&[a.url.clone(), b.url.clone()], &key, 200).await;
    println!("two nodes in one process, 200 requests on 1.00 credit: {ok} succeeded");
    assert_eq!(ok, EXACT_SUCCESSES);
    let balance = at_rest(&a, &user).await;
    at_rest(&b, &user).await;
    assert_eq!(balance.0, 1_000_000 - ok as i64 * EXACT_COST);
    assert_eq!(a.wait_for_usage(&user, ok).await.len(), ok, "usage rows = successes");
}

fn deployment_config(dir: &Path, db_url: &str, mock: &MockOpenAi, extra: &str) -> std::path::PathBuf {
    deployment_config_with_idle(dir, db_url, mock, extra, 1000)
}

fn deployment_config_with_idle(
    dir: &Path,
    db_url: &str,
    mock: &MockOpenAi,
    extra: &str,
    idle_ms: u64,
) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
data_dir = "{dir}"
[database]
url = "{db_url}"
[keys]
pepper = "{pepper}"
[log]
level = "warn"
[[providers]]
name = "mock"
kind = "openai"
base_url = "{mock}"
first_byte_timeout_ms = 1500
idle_timeout_ms = {idle_ms}
{PRICED_MODEL}
{EXACT_MODEL}
{extra}
"#,
            dir = dir.display(),
            pepper = layers_testkit::app::TEST_PEPPER,
            mock = mock.base_url,
        ),
    )
}

async fn owner_store(db: &TestDatabase) -> Arc<dyn Store> {
    layers_store::connect(&ConnectOptions { url: db.url.clone(), max_connections: 2, app_role: None }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_postgres_never_overspend() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let mock = MockOpenAi::start().await;
    mock.latency(5, 60);
    let dir = tempfile::tempdir().unwrap();
    let config = deployment_config(dir.path(), &db.url, &mock, NO_RATE_LIMITS);
    let bin = Path::new(env!("CARGO_BIN_EXE_layers"));
    layers_cmd(bin, &config, &["migrate"]);
    layers_cmd(bin, &config, &["admin", "user", "create", "--email", "two@example.com"]);
    let key = layers_cmd(bin, &config, &["admin", "key", "create", "--email", "two@example.com", "--env", "live"]);
    layers_cmd(
        bin,
        &config,
        &["admin", "credits", "grant", "--email", "two@example.com", "--credits", "1.00", "--reason", "t"],
    );
    let env = BTreeMap::new();
    let mut a = ServeProcess::start(bin, &config, &env).await;
    let mut b = ServeProcess::start(bin, &config, &env).await;
    let (ok, refused) = burst(&[a.url.clone(), b.url.clone()], &key, 200).await;
    println!("two processes, 200 requests on 1.00 credit: {ok} succeeded, {refused} refused");
    assert_eq!(ok, EXACT_SUCCESSES);
    // SIGTERM: both drain, settle, give their leases back and exit 0.
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
    let store = owner_store(&db).await;
    let user = store.user_by_email("two@example.com").await.unwrap().unwrap();
    let (balance, rows) = ledger_invariants(&store, user.id).await;
    assert_eq!(rows, ok, "usage rows = successes");
    assert_eq!(balance.0, 1_000_000 - ok as i64 * EXACT_COST);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_after_ten_thousand_mixed_requests() {
    let (app, _mock) = app_with(AppOptions::default(), NO_RATE_LIMITS).await.unwrap();
    let (user, key) = app.user_with_key("mixed@example.com", "1000").await;
    let poor = app.create_user("poor@example.com", Tier::Free).await;
    let poor_key = app.create_key(&poor, layers_domain::KeyEnv::Live).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", app.url);
    let total = 10_000usize;
    let results = futures_util::stream::iter(0..total)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            let (key, poor_key) = (key.clone(), poor_key.clone());
            async move {
                let (text, stream, k, leave) = match i % 20 {
                    0 | 1 => ("mock:500", false, &key, false),
                    2 => ("mock:hang", i % 40 == 2, &key, false),
                    3 => ("mock:cut", true, &key, false),
                    4 => ("mock:slow", true, &key, true),
                    5 | 6 => ("mock:tokens=100", false, &poor_key, false),
                    n if n % 2 == 0 => ("mock:tokens=100", true, &key, false),
                    _ => ("mock:tokens=100", false, &key, false),
                };
                let body = json!({"model": "mock/priced", "max_tokens": 100, "stream": stream,
                                  "messages": [{"role": "user", "content": text}]});
                let resp = client.post(&url).bearer_auth(k).json(&body).send().await.unwrap();
                let status = resp.status().as_u16();
                let mut s = resp.bytes_stream();
                if leave {
                    let _ = s.next().await;
                } else {
                    while s.next().await.is_some() {}
                }
                status
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<u16>>()
        .await;
    let count = |s: u16| results.iter().filter(|r| **r == s).count();
    println!("mixed: {} ok, {} 402, {} 502, {} 504", count(200), count(402), count(502), count(504));
    assert_eq!(count(402), total / 10, "every request of the broke user, and only those");
    let billed = total - count(402);
    let balance = at_rest(&app, &user).await;
    let rows = app.wait_for_usage(&user, billed).await;
    assert_eq!(rows.len(), billed, "one usage row per request that reached the upstream");
    let state = app.store().credit_state(user.id).await.unwrap();
    assert_eq!(state.leased.0, 0, "available = balance at rest: no hold leaked");
    assert_eq!(state.balance, balance);
    at_rest(&app, &poor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_loses_no_money_and_charges_nothing_twice() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let mock = MockOpenAi::start().await;
    mock.latency(2, 20);
    let dir = tempfile::tempdir().unwrap();
    // Short leases so the reaper can act within the test; no idle release while loaded.
    let config = deployment_config(
        dir.path(),
        &db.url,
        &mock,
        "[billing]\nlease_ttl_secs = 2\nreaper_interval_secs = 1\nidle_release_ms = 60000",
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_layers"));
    layers_cmd(bin, &config, &["migrate"]);
    layers_cmd(bin, &config, &["admin", "user", "create", "--email", "crash@example.com"]);
    let key = layers_cmd(bin, &config, &["admin", "key", "create", "--email", "crash@example.com", "--env", "live"]);
    layers_cmd(
        bin,
        &config,
        &["admin", "credits", "grant", "--email", "crash@example.com", "--credits", "100", "--reason", "t"],
    );
    let env = BTreeMap::new();
    let mut node = ServeProcess::start(bin, &config, &env).await;

    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", node.url);
    let load = tokio::spawn(async move {
        let mut ok = 0usize;
        for round in 0..200 {
            let reqs = (0..16).map(|i| {
                let body = json!({"model": "mock/priced", "max_tokens": 100, "stream": (round + i) % 2 == 0,
                                  "messages": [{"role": "user", "content": "mock:tokens=100"}]});
                client.post(&url).bearer_auth(&key).json(&body).send()
            });
            let results = futures_util::future::join_all(reqs).await;
            if results.iter().any(|r| r.is_err()) {
                break; // the node is gone
            }
            ok += results.iter().filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200)).count();
        }
        ok
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    node.kill_9();
    let killed = tokio::time::Instant::now();
    let served = load.await.unwrap();
    assert!(served > 0, "the load ran before the crash");

    // The only node comes back; its own reaper ends the dead node's leases (I4: within the
    // TTL, 2 s, plus the reaper's period, 1 s, plus 1 s).
    let mut restarted = ServeProcess::start(bin, &config, &env).await;
    let store = owner_store(&db).await;
    let user = store.user_by_email("crash@example.com").await.unwrap().unwrap();
    while store.credit_state(user.id).await.unwrap().leased.0 > 0 {
        assert!(killed.elapsed() <= Duration::from_secs(4), "a dead node's lease outlived TTL + reaper + 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the dead node's leases were reaped {:?} after kill -9", killed.elapsed());
    let (balance, rows) = ledger_invariants(&store, user.id).await;
    println!("after kill -9: {served} served, {rows} usage rows, balance {balance}");
    // Requests in flight at the crash may have no row; settlements of the last batch (20 ms)
    // may be lost (never charged); none is ever doubled.
    assert!(rows <= served + 16, "{rows} rows for {served} served");
    assert!(rows + 48 >= served, "only the last moments before the crash may be lost: {rows} of {served}");
    // The restarted node serves and bills normally.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", restarted.url))
        .bearer_auth(layers_cmd(
            bin,
            &config,
            &["admin", "key", "create", "--email", "crash@example.com", "--env", "live"],
        ))
        .json(&counted(100))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(restarted.terminate(), Some(0));
    let (after, _) = ledger_invariants(&store, user.id).await;
    assert_eq!(after.0, balance.0 - COST);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_nodes_late_settlement_is_refused_not_applied_twice() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let mock = MockOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The stream's idle timeout outlasts the stall, so the request finishes and settles late.
    let config = deployment_config_with_idle(
        dir.path(),
        &db.url,
        &mock,
        "[billing]\nlease_ttl_secs = 1\nidle_release_ms = 60000",
        30_000,
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_layers"));
    layers_cmd(bin, &config, &["migrate"]);
    layers_cmd(bin, &config, &["admin", "user", "create", "--email", "paused@example.com"]);
    let key = layers_cmd(bin, &config, &["admin", "key", "create", "--email", "paused@example.com", "--env", "live"]);
    layers_cmd(
        bin,
        &config,
        &["admin", "credits", "grant", "--email", "paused@example.com", "--credits", "10", "--reason", "t"],
    );
    let mut node = ServeProcess::start(bin, &config, &BTreeMap::new()).await;
    let store = owner_store(&db).await;
    let user = store.user_by_email("paused@example.com").await.unwrap().unwrap();

    // A stream of 20 pieces, 100 ms apart, holds credit on the node's lease.
    let body = json!({"model": "mock/priced", "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "mock:slow=100"}]});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", node.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert!(store.credit_state(user.id).await.unwrap().leased.0 > 0);

    // The node stalls (not dead) past its lease's TTL; another process reaps the lease.
    std::process::Command::new("kill").args(["-STOP", &node.pid().to_string()]).status().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while store.credit_state(user.id).await.unwrap().leased.0 > 0 {
        layers_cmd(bin, &config, &["admin", "leases", "reap"]);
        assert!(tokio::time::Instant::now() < deadline, "the stalled node's lease was never reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::process::Command::new("kill").args(["-CONT", &node.pid().to_string()]).status().unwrap();

    // The stream finishes; its settlement arrives after the reaper returned the lease.
    while stream.next().await.is_some() {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = store.recent_usage(user.id, 10, None).await.unwrap();
        if let Some(row) = rows.into_iter().next() {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the late request was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.charged.0, 0, "a settlement against a reaped lease is refused");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = store.audit_events(user.id, 20).await.unwrap();
        if events.iter().any(|e| e.event_type == "late_settlement_refused") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the refusal was not recorded: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.terminate(), Some(0));
    let (balance, _) = ledger_invariants(&store, user.id).await;
    assert_eq!(balance.0, 10_000_000, "nothing charged, nothing charged twice");
    store.close().await;
}

/// A key's daily limit holds like a balance does, on two nodes at once: exactly ⌊limit / cost⌋
/// requests of the day pass, and the next UTC day the same number again (SPEC §4.2 I5, for
/// calendar limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_key_limit_is_exact_on_two_nodes_and_resets_the_next_day() {
    let Some((a, mock)) = app_with(AppOptions::default().postgres(), NO_RATE_LIMITS).await else { return };
    let b = layers_testkit::TestApp::spawn_with(
        AppOptions::default()
            .second_node_of(&a)
            .with_mock(&mock)
            .config(PRICED_MODEL)
            .config(EXACT_MODEL)
            .config(NO_RATE_LIMITS),
    )
    .await
    .unwrap();
    mock.latency(5, 60);
    let (user, key) = a.user_with_key("daily-two-nodes@example.com", "10.00").await;
    let id = a.core.keys.list(user.id).await.unwrap()[0].id;
    let limits = layers_store::KeyLimits {
        spend_limit: Some(MicroCredits(1_000_000)),
        period: layers_domain::dashboard::SpendPeriod::Day,
        ..Default::default()
    };
    a.core.keys.set_limits(user.id, id, limits).await.unwrap();
    let urls = [a.url.clone(), b.url.clone()];
    let (ok, refused) = burst(&urls, &key, 60).await;
    println!("daily limit 1.00 on two nodes, 60 requests: {ok} succeeded, {refused} refused");
    assert_eq!(ok, EXACT_SUCCESSES, "exactly what the day's limit pays for");
    at_rest(&a, &user).await;
    at_rest(&b, &user).await;
    let spent_today: i64 =
        a.store().recent_usage(user.id, 1_000, None).await.unwrap().iter().map(|u| u.charged.0).sum();
    assert_eq!(spent_today, ok as i64 * EXACT_COST);
    // The next UTC day on both nodes: the limit starts again, the balance pays.
    for node in [&a, &b] {
        node.core.clock.advance(Duration::from_secs(86_400));
    }
    let (again, _) = burst(&urls, &key, 60).await;
    assert_eq!(again, EXACT_SUCCESSES, "a new day, the same limit");
    let balance = at_rest(&a, &user).await;
    assert_eq!(balance.0, 10_000_000 - 2 * EXACT_SUCCESSES as i64 * EXACT_COST);
    ledger_invariants(a.store(), user.id).await;
}
