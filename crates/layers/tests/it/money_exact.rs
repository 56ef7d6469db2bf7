//! I5 without slack: where a request's hold equals its cost, exactly ⌊balance / cost⌋ requests
//! succeed before the first 402 — concurrently on one node, across two keys of one account, and
//! across two nodes — with no phantom 402 while funded credit sits in another key's or node's
//! lease.

use layers_domain::{KeyEnv, MicroCredits};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};

use crate::billing::{at_rest, exact, EXACT_MODEL};

const NO_RATE_LIMITS: &str = "[tiers.pro]\nrequests_per_minute = 1000000";

async fn node(opts: AppOptions, mock: &MockOpenAi) -> Option<TestApp> {
    TestApp::spawn_with(opts.with_mock(mock).config(EXACT_MODEL).config(NO_RATE_LIMITS)).await
}

async fn status(app: &TestApp, key: &str) -> u16 {
    app.chat(key, &exact()).send().await.unwrap().status().as_u16()
}

/// Sends requests one at a time, round robin over `targets`, until the first 402.
async fn until_refused(targets: &[(&TestApp, &str)]) -> usize {
    for i in 0.. {
        let (app, key) = targets[i % targets.len()];
        match status(app, key).await {
            200 => {}
            402 => return i,
            other => panic!("unexpected {other}"),
        }
    }
    unreachable!()
}

async fn burst_on_one_node(opts: AppOptions) {
    let mock = MockOpenAi::start().await;
    let Some(app) = node(opts, &mock).await else { return };
    mock.latency(5, 40);
    let (user, key) = app.user_with_key("burst@example.com", "1.00").await;
    let sends = (0..200).map(|_| app.chat(&key, &exact()).send());
    let statuses: Vec<u16> =
        futures_util::future::join_all(sends).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 402), "{statuses:?}");
    assert_eq!(ok, 20, "⌊1.00 / 0.05⌋ exactly");
    assert_eq!(at_rest(&app, &user).await, MicroCredits(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_exactly_what_the_balance_pays_for_on_sqlite() {
    burst_on_one_node(AppOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_exactly_what_the_balance_pays_for_on_postgres() {
    burst_on_one_node(AppOptions::default().postgres()).await;
}

async fn two_keys_of_one_account(opts: AppOptions) {
    let mock = MockOpenAi::start().await;
    let Some(app) = node(opts, &mock).await else { return };
    let (user, a) = app.user_with_key("twokeys@example.com", "1.00").await;
    let b = app.create_key(&user, KeyEnv::Live).await;
    for _ in 0..6 {
        assert_eq!(status(&app, &a).await, 200);
    }
    // Key a's lease holds credit key b needs: it comes back, no phantom 402.
    let rest = until_refused(&[(&app, &b)]).await;
    assert_eq!(6 + rest, 20);
    assert_eq!(at_rest(&app, &user).await, MicroCredits(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_of_one_account_get_the_whole_balance_on_sqlite() {
    two_keys_of_one_account(AppOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_of_one_account_get_the_whole_balance_on_postgres() {
    two_keys_of_one_account(AppOptions::default().postgres()).await;
}

async fn two_nodes(redis: bool) {
    let mock = MockOpenAi::start().await;
    let first = if redis { AppOptions::default().postgres().redis() } else { Some(AppOptions::default().postgres()) };
    let Some(first) = first else { return };
    let Some(a) = node(first.clone(), &mock).await else { return };
    let b = node(first.second_node_of(&a), &mock).await.unwrap();
    let (user, key) = a.user_with_key("twonodes@example.com", "1.00").await;
    let served = until_refused(&[(&a, &key), (&b, &key)]).await;
    assert_eq!(served, 20, "round robin over two nodes");
    at_rest(&a, &user).await;
    assert_eq!(at_rest(&b, &user).await, MicroCredits(0));

    // The same concurrently: both nodes at once.
    a.grant(&user, "1.00").await;
    let sends = (0..100).map(|i| if i % 2 == 0 { &a } else { &b }).map(|n| n.chat(&key, &exact()).send());
    let statuses: Vec<u16> =
        futures_util::future::join_all(sends).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20, "{statuses:?}");
    assert_eq!(at_rest(&a, &user).await, MicroCredits(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_balance_exactly() {
    two_nodes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_redis_share_the_balance_exactly() {
    two_nodes(true).await;
}
