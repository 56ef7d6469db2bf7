//! Upstream failures become clean errors: 502/504 before the first byte, an error event (never
//! a clean [DONE]) after it. Failed requests cost nothing.

use std::time::Duration;

use layers_testkit::mock_openai::{Reply, StreamEnd};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::Value;

use crate::support::*;

async fn app() -> (TestApp, MockOpenAi, layers_store::User, String) {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock)).await.unwrap();
    let (user, key) = app.user_with_key("upstream@example.com", "10").await;
    (app, mock, user, key)
}

#[tokio::test]
async fn upstream_5xx_is_a_clean_502_and_costs_nothing() {
    let (app, mock, user, key) = app().await;
    mock.reply_with(Reply::Status { status: 500, message: "boom: internal stack trace".into(), retry_after: None });
    let (status, err) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "x")).send().await.unwrap()).await;
    assert_eq!(status, 502);
    assert_eq!(err["code"], "upstream_error");
    assert!(!err["message"].as_str().unwrap().contains("stack trace"), "upstream internals leaked: {err}");
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!((rows[0].status, rows[0].cost.0), (502, 0));
    assert_eq!(rows[0].error_code.as_deref(), Some("upstream_error"));
}

#[tokio::test]
async fn upstream_client_errors_relay_the_explanation() {
    let (app, mock, _user, key) = app().await;
    mock.reply_with(Reply::Status { status: 400, message: "temperature must be <= 2".into(), retry_after: None });
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "x")).send().await.unwrap();
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let (status, err) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(err["message"], "temperature must be <= 2");
}

#[tokio::test]
async fn upstream_rate_limits_pass_on_retry_after() {
    let (app, mock, _user, key) = app().await;
    mock.reply_with(Reply::Status { status: 429, message: "slow down".into(), retry_after: Some(7) });
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "x")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["retry-after-ms"], "7000");
}

#[tokio::test]
async fn upstream_timeout_is_a_clean_504() {
    let (app, mock, user, key) = app().await;
    mock.reply_with(Reply::Hang);
    let started = std::time::Instant::now();
    let (status, err) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "x")).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (504, Some("upstream_timeout")));
    assert!(started.elapsed() < Duration::from_secs(5), "the first-byte timeout (1.5 s) applied");
    // Streaming requests time out the same way before the first byte.
    let (status, _) = error_of(app.chat(&key, &stream_body(MOCK_MODEL, "x", false)).send().await.unwrap()).await;
    assert_eq!(status, 504);
    let rows = app.wait_for_usage(&user, 2).await;
    assert!(rows.iter().all(|r| r.status == 504 && r.cost.0 == 0));
}

#[tokio::test]
async fn unreachable_upstream_is_a_clean_502() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::spawn_with(AppOptions::default().config(&format!(
        r#"
[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
[[models]]
name = "dead/model"
routes = [{{ provider = "dead", model = "m" }}]
input_per_mtok = 1.0
output_per_mtok = 1.0
context_window = 1000
"#
    )))
    .await
    .unwrap();
    let (_, key) = app.user_with_key("dead@example.com", "1").await;
    let (status, err) = error_of(app.chat(&key, &chat_body("dead/model", "x")).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (502, Some("upstream_unreachable")));
}

async fn stream_failure(end: StreamEnd) -> (Vec<String>, layers_store::UsageRecord) {
    let (app, mock, user, key) = app().await;
    mock.reply_with(Reply::SlowStream {
        pieces: vec!["one".into(), " two".into(), " three".into()],
        delay: Duration::from_millis(20),
        end,
        prompt_tokens: 9,
    });
    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "x", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "headers were sent before the failure");
    let events = sse_data(resp).await;
    let rows = app.wait_for_usage(&user, 1).await;
    (events, rows[0].clone())
}

#[tokio::test]
async fn a_stalled_stream_ends_with_an_error_event_not_done() {
    let (events, row) = stream_failure(StreamEnd::Stall).await;
    assert_eq!(streamed_text(&events), "one two three");
    assert!(!events.iter().any(|e| e == "[DONE]"), "a stalled stream must not look complete");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert!(last["request_id"].is_string());
    assert_eq!(row.status, 504);
    assert!(row.usage.completion_tokens > 0, "what was generated is recorded");
    // The provider bills what it generated: the output that reached the client is charged.
    assert!(row.cost.0 > 0 && row.charged == row.cost, "{row:?}");
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event_not_done() {
    let (events, row) = stream_failure(StreamEnd::Cut).await;
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    assert_eq!(row.status, 502);
    assert!(row.cost.0 > 0 && row.charged == row.cost, "what was delivered is charged: {row:?}");
}

#[tokio::test]
async fn a_redirecting_upstream_is_an_error_and_the_second_host_receives_nothing() {
    let (app, mock, _, key) = app().await;
    let elsewhere = MockOpenAi::start().await;
    for status in [301, 302, 307, 308] {
        let location = format!("{}/chat/completions", elsewhere.base_url);
        mock.reply_with(Reply::Redirect { status, location });
        let (code, err) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "the prompt")).send().await.unwrap()).await;
        assert_eq!((code, err["code"].as_str().unwrap()), (502, "upstream_error"), "{status}");
    }
    assert!(elsewhere.requests().is_empty(), "the redirect was followed with the provider key and the prompt");
}
