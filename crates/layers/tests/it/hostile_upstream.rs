//! A hostile upstream cannot take the node's memory (issue 12, item 6): bodies, single SSE
//! events and accumulated thinking are bounded, and all calls share one budget, so a mock
//! exceeding a bound yields a clean error and the memory comes back.

use std::time::Instant;

use layers_testkit::app::MOCK_CLAUDE;
use layers_testkit::mock_openai::{MockOpenAi, Reply};
use layers_testkit::{AppOptions, MockAnthropic, TestApp};
use serde_json::json;

use crate::support::*;

const MIB: usize = 1024 * 1024;

async fn app(mock: &MockOpenAi, config: &str) -> (TestApp, String) {
    let app = TestApp::spawn_with(AppOptions::default().config(config).with_mock(mock)).await.unwrap();
    let (_, key) = app.user_with_key("hostile@example.com", "100").await;
    (app, key)
}

#[tokio::test]
async fn a_body_past_the_per_body_bound_is_a_clean_502() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(Reply::Huge { bytes: 40 * MIB });
    let (app, key) = app(&mock, "").await;
    let (status, err) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "big")).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str().unwrap()), (502, "upstream_invalid_response"));
    assert_eq!(app.core.chat.upstream_budget().free_bytes(), 256 * MIB, "the budget came back");
}

#[tokio::test]
async fn concurrent_large_bodies_share_one_budget_and_the_rest_are_refused_at_once() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(Reply::Huge { bytes: 30 * MIB });
    let (app, key) = app(&mock, "[limits]\nupstream_buffer_mb = 64").await;
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let req = app.chat(&key, &chat_body(MOCK_MODEL, "big"));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap();
                (status, body.len())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(c.await.unwrap());
    }
    let served = outcomes.iter().filter(|(s, len)| *s == 200 && *len > 30 * MIB).count();
    let refused = outcomes.iter().filter(|(s, _)| *s == 503).count();
    println!(
        "10 × 30 MiB bodies on a 64 MiB budget: {served} served, {refused} refused in {:?}; peak RSS of this process \
         {} MiB (the mock's bodies included)",
        started.elapsed(),
        proc_status_kib("VmHWM") / 1024
    );
    assert_eq!(served + refused, 10, "{outcomes:?}");
    assert!(refused >= 1, "ten 30 MiB bodies fit a 64 MiB budget?");
    assert!(served >= 1, "nothing was served");
    assert_eq!(app.core.chat.upstream_budget().free_bytes(), 64 * MIB, "the budget came back");
    // And the refusal says what it is.
    mock.reply_with(Reply::Huge { bytes: 100 * 1024 });
    assert_eq!(app.chat(&key, &chat_body(MOCK_MODEL, "small")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_single_sse_event_past_the_bound_is_a_clean_502() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(Reply::Huge { bytes: 9 * MIB });
    let (app, key) = app(&mock, "").await;
    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "big", true)).send().await.unwrap();
    let (status, err) = error_of(resp).await;
    assert_eq!((status, err["code"].as_str().unwrap()), (502, "upstream_invalid_response"));
    assert_eq!(app.core.chat.upstream_budget().free_bytes(), 256 * MIB);
}

#[tokio::test]
async fn accumulated_thinking_past_the_bound_ends_the_stream_cleanly() {
    let mock = MockAnthropic::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock_anthropic(&mock)).await.unwrap();
    let (_, key) = app.user_with_key("thinker@example.com", "100").await;
    let body = json!({"model": MOCK_CLAUDE, "stream": true, "max_tokens": 100,
        "messages": [{"role": "user", "content": "mock:think-huge"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    if resp.status() == 200 {
        let events = sse_data(resp).await;
        assert!(events.last().is_some_and(|e| e.contains("\"error\"")), "the stream did not end with an error");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    } else {
        let (status, err) = error_of(resp).await;
        assert_eq!((status, err["code"].as_str().unwrap()), (502, "upstream_invalid_response"));
    }
}
