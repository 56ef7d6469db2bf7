//! Credits on the request path (SPEC §4.2): holds, settlement on every ending, caps, headers.

use std::time::Duration;

use futures_util::StreamExt;
use layers_domain::{KeyEnv, MicroCredits, Tier};
use layers_store::{CapOverrides, KeyLimits, TransactionKind, User};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::support::*;

/// Priced so that `mock:tokens=100` costs 10 × 0.5 + 100 × 5 µ$ = 0.0505 credits.
pub const PRICED: &str = "mock/priced";
pub const PRICED_MODEL: &str = r#"
[[models]]
name = "mock/priced"
routes = [{ provider = "mock", model = "priced" }]
input_per_mtok = 0.5
output_per_mtok = 5.0
context_window = 128000
max_output_tokens = 4096
"#;

/// Free input and 500 µcr per output token: with `max_tokens` 100 and an upstream that
/// produces exactly 100 tokens, a request's hold equals its cost, 0.05 credits.
pub const EXACT_MODEL: &str = r#"
[[models]]
name = "mock/exact"
routes = [{ provider = "mock", model = "exact" }]
input_per_mtok = 0.0
output_per_mtok = 5.0
context_window = 128000
max_output_tokens = 4096
"#;
pub const EXACT_COST: i64 = 50_000;

pub fn exact() -> Value {
    json!({"model": "mock/exact", "max_tokens": 100, "messages": [{"role": "user", "content": "mock:tokens=100"}]})
}

pub async fn app(extra: &str) -> (TestApp, MockOpenAi) {
    app_with(AppOptions::default(), extra).await.unwrap()
}

pub async fn app_with(opts: AppOptions, extra: &str) -> Option<(TestApp, MockOpenAi)> {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(opts.with_mock(&mock).config(PRICED_MODEL).config(EXACT_MODEL).config(extra)).await?;
    Some((app, mock))
}

/// A request that costs 0.0505 credits (100 completion tokens, max_tokens 100).
pub fn counted(tokens: u32) -> Value {
    json!({"model": PRICED, "max_tokens": 100, "messages": [{"role": "user", "content": format!("mock:tokens={tokens}")}]})
}

/// Waits until every settlement is written and every idle lease returned, then checks the
/// ledger invariants: balance = ledger sum ≥ 0, nothing leased, charges = debits.
pub async fn at_rest(app: &TestApp, user: &User) -> MicroCredits {
    let store = app.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = store.credit_state(user.id).await.unwrap();
        let backlog = app.core.billing.sink().backlog();
        if state.leased.0 == 0 && backlog == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not at rest: {state:?}, backlog {backlog}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = store.credit_state(user.id).await.unwrap();
    assert!(state.balance.0 >= 0, "balance below zero: {state:?}");
    assert_eq!(store.ledger_sum(user.id).await.unwrap(), state.balance, "balance = sum of the ledger");
    let leases = store.leases_of_user(user.id).await.unwrap();
    assert!(leases.iter().all(|l| l.state != layers_store::LeaseState::Active || l.amount.0 == 0), "{leases:?}");
    let usage = store.recent_usage(user.id, 100_000, None).await.unwrap();
    let debits: Vec<_> = store
        .transactions(user.id, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TransactionKind::Usage)
        .collect();
    let charged: i64 = usage.iter().map(|u| u.charged.0).sum();
    assert_eq!(charged, -debits.iter().map(|t| t.amount.0).sum::<i64>(), "charges = debits");
    assert_eq!(usage.iter().filter(|u| u.charged.0 > 0).count(), debits.len(), "one debit per charged request");
    state.balance
}

#[tokio::test]
async fn billed_responses_carry_charged_and_remaining() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("headers@example.com", "10").await;
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // 12 prompt × 0.15 + 6 completion × 0.60 US$/Mtok = 540 µcr.
    assert_eq!(resp.headers()["x-layers-credits-charged"], "0.000540");
    assert_eq!(resp.headers()["x-layers-credits-remaining"], "9.999460");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["layers"]["credits_used"], "0.000540", "exact decimal, never a float");
    assert_eq!(v["layers"]["credits_used_micros"], 540);

    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "hi", false)).send().await.unwrap();
    assert!(resp.headers().get("x-layers-credits-charged").is_none(), "unknown until the stream ends");
    assert!(resp.headers().get("x-layers-credits-remaining").is_some());
    sse_data(resp).await;

    let balance = at_rest(&app, &user).await;
    assert_eq!(balance, MicroCredits(10_000_000 - 2 * 540));
    let usage = app.wait_for_usage(&user, 2).await;
    assert!(usage.iter().all(|u| u.charged.0 == 540 && u.cost.0 == 540));
}

#[tokio::test]
async fn no_credit_is_402_and_nothing_reaches_the_upstream() {
    let (app, mock) = app("").await;
    let user = app.create_user("broke@example.com", Tier::Free).await;
    let key = app.create_key(&user, KeyEnv::Live).await;
    let resp = app.chat(&key, &counted(100)).send().await.unwrap();
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let (status, err) = error_of(resp).await;
    assert_eq!((status, err["code"].as_str()), (402, Some("insufficient_credits")));
    assert!(err["message"].as_str().unwrap().contains("needs up to"), "{err}");
    assert!(mock.requests().is_empty());
    // Test keys are never billed, so they work with no credit at all.
    let test_key = app.create_key(&user, KeyEnv::Test).await;
    assert_eq!(app.chat(&test_key, &counted(100)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_explicit_max_tokens_above_the_per_request_cap_is_400() {
    let (app, mock) = app("[tiers.pro]\nmax_credits_per_request = 0.01").await;
    let (_user, key) = app.user_with_key("cap@example.com", "10").await;
    let mut body = counted(100);
    body["max_tokens"] = json!(1000);
    let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("request_too_expensive")));
    let msg = err["message"].as_str().unwrap();
    // 1,000 output tokens at 5 µcr each, and the prompt's bound (its bytes) at 0.5 µcr.
    assert!(msg.contains("0.010000") && msg.contains("0.501750"), "both figures: {msg}");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn without_max_tokens_the_output_is_lowered_to_fit_the_cap() {
    let (app, mock) = app("[tiers.pro]\nmax_credits_per_request = 0.01").await;
    let (_user, key) = app.user_with_key("lower@example.com", "10").await;
    let body = json!({"model": PRICED, "messages": [{"role": "user", "content": "mock:tokens=10"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let capped: u64 = resp.headers()["x-layers-max-tokens-capped"].to_str().unwrap().parse().unwrap();
    // 0.01 credits = 10,000 µcr at 500 µcr per output token, less the prompt.
    assert!((16..20).contains(&capped), "{capped}");
    assert_eq!(mock.last_request().body["max_tokens"], capped);
}

#[tokio::test]
async fn without_max_tokens_the_output_is_lowered_to_what_the_balance_covers() {
    let (app, mock) = app("").await;
    let (_user, key) = app.user_with_key("little@example.com", "0.02").await;
    let body = json!({"model": PRICED, "messages": [{"role": "user", "content": "mock:tokens=10"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    let capped: u64 = resp.headers()["x-layers-max-tokens-capped"].to_str().unwrap().parse().unwrap();
    assert!((30..40).contains(&capped), "{capped}");
    assert_eq!(mock.last_request().body["max_tokens"], capped);
    // An explicit max_tokens is never lowered: the client asked for it.
    let mut explicit = body.clone();
    explicit["max_tokens"] = json!(4096);
    let (status, _) = error_of(app.chat(&key, &explicit).send().await.unwrap()).await;
    assert_eq!(status, 402);
}

#[tokio::test]
async fn the_hourly_spend_cap_is_429_and_not_retried() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("hourly@example.com", "10").await;
    app.core
        .accounts
        .set_caps(user.id, CapOverrides { per_request: None, per_hour: Some(MicroCredits(120_000)) })
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &counted(100)).send().await.unwrap().status(), 200);
    }
    let resp = app.chat(&key, &counted(100)).send().await.unwrap();
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let (status, err) = error_of(resp).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("spend_limit_exceeded")));
    assert!(err["message"].as_str().unwrap().contains("0.120000"));
    at_rest(&app, &user).await;
}

#[tokio::test]
async fn a_key_spend_limit_is_402() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("keylimit@example.com", "10").await;
    let record = app.core.keys.list(user.id).await.unwrap().remove(0);
    let limits = KeyLimits { spend_limit: Some(MicroCredits(60_000)), ..KeyLimits::default() };
    app.core.keys.set_limits(user.id, record.id, limits).await.unwrap();
    assert_eq!(app.chat(&key, &counted(100)).send().await.unwrap().status(), 200);
    let (status, err) = error_of(app.chat(&key, &counted(100)).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (402, Some("key_spend_limit_reached")));
    // Another key of the same account is not limited.
    let other = app.create_key(&user, KeyEnv::Live).await;
    assert_eq!(app.chat(&other, &counted(100)).send().await.unwrap().status(), 200);
    at_rest(&app, &user).await;
}

#[tokio::test]
async fn every_ending_settles_exactly_once() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("endings@example.com", "10").await;
    let msg = |text: &str, stream: bool| json!({"model": PRICED, "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": text}]});
    // Success.
    assert_eq!(app.chat(&key, &msg("mock:tokens=100", false)).send().await.unwrap().status(), 200);
    // Upstream error and timeout: no charge.
    assert_eq!(app.chat(&key, &msg("mock:500", false)).send().await.unwrap().status(), 502);
    assert_eq!(app.chat(&key, &msg("mock:hang", false)).send().await.unwrap().status(), 504);
    // Cut and stalled streams: an error event; what reached the client before is charged.
    sse_data(app.chat(&key, &msg("mock:cut", true)).send().await.unwrap()).await;
    sse_data(app.chat(&key, &msg("mock:stall", true)).send().await.unwrap()).await;
    // The client leaves mid-stream: the provider's stream is read to its end and its usage paid.
    let resp = app.chat(&key, &msg("mock:slow", true)).send().await.unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    drop(body);
    // The client leaves before the upstream answered: the attempt in flight runs to its end
    // (here a timeout, which costs nothing) and no retry is made for nobody.
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = quick
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(&key)
        .json(&msg("mock:hang", false))
        .send()
        .await;
    assert!(gone.is_err());

    let rows = app.wait_for_usage(&user, 7).await;
    let by_status = |s: u16| rows.iter().filter(|r| r.status == s).collect::<Vec<_>>();
    assert_eq!(by_status(200).len(), 1);
    assert_eq!(by_status(200)[0].charged.0, 50_500);
    let failed: Vec<_> = rows.iter().filter(|r| r.status == 502 || r.status == 504).collect();
    assert_eq!(failed.len(), 4);
    for r in failed {
        // Before any output: free. After output reached the client: that output is charged.
        assert_eq!(r.charged.0 > 0, r.streamed, "{r:?}");
        assert_eq!(r.charged, r.cost);
    }
    let gone_rows = by_status(499);
    assert_eq!(gone_rows.len(), 2, "both abandoned requests are recorded");
    let (streamed, early): (Vec<_>, Vec<_>) = gone_rows.into_iter().partition(|r| r.streamed);
    assert!(streamed[0].charged.0 > 0 && !streamed[0].usage_estimated, "the provider's own usage: {:?}", streamed[0]);
    assert_eq!(early[0].charged.0, 0, "nobody answered before the client left: {:?}", early[0]);
    at_rest(&app, &user).await;
}

#[tokio::test]
async fn a_cost_beyond_the_hold_is_capped_and_the_shortfall_recorded() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("shortfall@example.com", "0.05").await;
    // The upstream ignores max_tokens and bills 5,000 tokens (2.5 credits) on a 20-token hold.
    let body =
        json!({"model": PRICED, "max_tokens": 20, "messages": [{"role": "user", "content": "mock:tokens=5000"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let charged: f64 = resp.headers()["x-layers-credits-charged"].to_str().unwrap().parse().unwrap();
    assert!(charged > 0.0 && charged <= 0.05, "charged what the balance covers: {charged}");
    let balance = at_rest(&app, &user).await;
    assert!(balance.0 >= 0);
    assert!(app.core.billing.stats().shortfalls.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = app.store().audit_events(user.id, 50).await.unwrap();
        if events.iter().any(|e| e.event_type == "billing_shortfall") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no shortfall audit event: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn key_overrides_of_the_caps_apply() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("keycaps@example.com", "10").await;
    let record = app.core.keys.list(user.id).await.unwrap().remove(0);
    let caps = CapOverrides { per_request: Some(MicroCredits(10_000)), per_hour: None };
    app.core.keys.set_limits(user.id, record.id, KeyLimits { caps, ..KeyLimits::default() }).await.unwrap();
    let (status, err) = error_of(app.chat(&key, &counted(100)).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("request_too_expensive")));
    let caps = CapOverrides { per_request: None, per_hour: Some(MicroCredits(60_000)) };
    app.core.keys.set_limits(user.id, record.id, KeyLimits { caps, ..KeyLimits::default() }).await.unwrap();
    assert_eq!(app.chat(&key, &counted(100)).send().await.unwrap().status(), 200);
    let (status, err) = error_of(app.chat(&key, &counted(100)).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("spend_limit_exceeded")));
    assert!(err["message"].as_str().unwrap().contains("for this API key"), "{err}");
    // The account's other keys are not held to this key's cap.
    let other = app.create_key(&user, KeyEnv::Live).await;
    assert_eq!(app.chat(&other, &counted(100)).send().await.unwrap().status(), 200);
    at_rest(&app, &user).await;
}

#[tokio::test]
async fn every_choice_is_held_for() {
    let (app, mock) = app("[tiers.pro]\nmax_credits_per_request = 0.11").await;
    let (user, key) = app.user_with_key("choices@example.com", "0.12").await;
    let mut body = counted(100);
    assert_eq!(app.chat(&key, &body).send().await.unwrap().status(), 200, "one choice: 0.05 credits");
    // Three choices may produce three times the output: 0.15 credits, over the cap.
    body["n"] = json!(3);
    let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("request_too_expensive")));
    // Two choices fit the cap (0.1006 of 0.11) but not what is left of the balance (0.07).
    body["n"] = json!(2);
    let (status, _) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!(status, 402);
    assert_eq!(mock.requests().len(), 1);
    at_rest(&app, &user).await;
}
