//! However a request ends, it pays what the provider bills, never less than the usage the
//! provider reported and never for a call no provider answered (issue 11, items 3 and 4).

use std::time::Duration;

use futures_util::StreamExt;
use layers_testkit::mock_openai::Reply;
use layers_testkit::AppOptions;
use serde_json::json;

use crate::billing::{app_with, at_rest, PRICED};
use crate::support::*;

/// A reasoning model: hidden reasoning counts as output, up to 100,000 tokens.
const REASONER: &str = r#"
[[models]]
name = "mock/reasoner"
routes = [{ provider = "mock", model = "o-mock" }]
input_per_mtok = 0.5
output_per_mtok = 5.0
context_window = 200000
max_output_tokens = 100000
"#;

#[tokio::test]
async fn a_client_that_leaves_a_reasoning_stream_pays_the_reasoning() {
    let (app, mock) = app_with(AppOptions::default().config(REASONER), "").await.unwrap();
    let (user, key) = app.user_with_key("think@example.com", "100").await;
    let body = json!({"model": "mock/reasoner", "max_completion_tokens": 12000, "stream": true,
                      "messages": [{"role": "user", "content": "mock:think=10000"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    let mut s = resp.bytes_stream();
    s.next().await.unwrap().unwrap();
    drop(s); // after the first chunk
    at_rest(&app, &user).await;
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    assert_eq!(row.status, 499);
    // The provider's own count, read after the client left: 10 prompt tokens at 50 µcr and
    // 10,000 output tokens (9,980 of them reasoning) at 500 µcr.
    assert_eq!((row.usage.completion_tokens, row.usage.reasoning_tokens), (10_000, 9_980));
    assert!(!row.usage_estimated);
    assert_eq!((row.cost.0, row.charged.0), (5_000_500, 5_000_500));
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_during_a_retry_backoff_pays_nothing_and_nothing_more_is_sent() {
    let (app, mock) = app_with(AppOptions::default(), "[routing]\nbackoff_max_ms = 5000").await.unwrap();
    let (user, key) = app.user_with_key("backoff@example.com", "10").await;
    // The provider fails and asks for 2 s: the gateway waits before its retry.
    mock.reply_with(Reply::Status { status: 500, message: "busy".into(), retry_after: Some(2) });
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
    let gone = quick
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(&key)
        .json(&chat_body(PRICED, "hi"))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    assert_eq!((row.status, row.charged.0, row.cost.0), (499, 0, 0), "{row:?}");
    // The row is written by the task that would have retried, once it gave up: no retry came.
    assert_eq!(mock.requests().len(), 1, "no retry for a client that is gone");
    at_rest(&app, &user).await;
}

#[tokio::test]
async fn a_stream_without_done_is_charged_the_usage_it_reported() {
    let (app, _mock) = app_with(AppOptions::default(), "").await.unwrap();
    let (user, key) = app.user_with_key("nodone@example.com", "10").await;
    let body = json!({"model": PRICED, "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "mock:nodone"}]});
    let events = sse_data(app.chat(&key, &body).send().await.unwrap()).await;
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "still not a clean end for the client");
    at_rest(&app, &user).await;
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    // 10 prompt and 20 completion tokens, as the final usage chunk said.
    assert_eq!((row.usage.prompt_tokens, row.usage.completion_tokens), (10, 20));
    assert_eq!((row.charged.0, row.usage_estimated), (10 * 50 + 20 * 500, false), "{row:?}");
}

#[tokio::test]
async fn an_estimate_never_exceeds_the_output_the_hold_covered() {
    let (app, _mock) = app_with(AppOptions::default(), "").await.unwrap();
    let (user, key) = app.user_with_key("estimate@example.com", "10").await;
    // The upstream streams 20 pieces (ignoring max_tokens 5), then dies without usage.
    let body = json!({"model": PRICED, "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "mock:cut"}]});
    sse_data(app.chat(&key, &body).send().await.unwrap()).await;
    at_rest(&app, &user).await;
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    assert!(row.usage_estimated);
    assert_eq!(row.usage.completion_tokens, 5, "never more than the 5 the hold covered: {row:?}");
    assert!(row.charged <= row.held, "{row:?}");
}
