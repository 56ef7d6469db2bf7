//! Routing across a model's routes (SPEC §2.2): retries with backoff, fall-over to the next
//! route on 5xx / timeouts / refused connections / 429, no retry once a stream has started,
//! no retry of the client's own mistakes, and the circuit breaker opening and closing.

use std::time::{Duration, Instant};

use layers_testkit::app::MOCK_UPSTREAM_KEY;
use layers_testkit::mock_openai::Reply;
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::Value;

use crate::support::*;

const ROUTED: &str = "mock/routed";

/// A model with two routes: `first` (a mock, or `first_url` when given) then `second`.
async fn two_routes(first_url: Option<&str>, routing: &str) -> (TestApp, MockOpenAi, MockOpenAi) {
    let (first, second) = (MockOpenAi::start().await, MockOpenAi::start().await);
    second.reply_with(Reply::Answer {
        content: "served by the second route".into(),
        prompt_tokens: 10,
        completion_tokens: 4,
    });
    let provider = |name: &str, url: &str| {
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key_env = \"MOCK_OPENAI_KEY\"\n\
             connect_timeout_ms = 500\nfirst_byte_timeout_ms = 400\nidle_timeout_ms = 400\ntotal_timeout_ms = 10000\n"
        )
    };
    let config = format!(
        "{}\n{}\n[[models]]\nname = \"{ROUTED}\"\n\
         routes = [{{ provider = \"first\", model = \"gpt-a\" }}, {{ provider = \"second\", model = \"gpt-b\" }}]\n\
         input_per_mtok = 1.0\noutput_per_mtok = 2.0\ncontext_window = 128000\nmax_output_tokens = 1000\n\n[routing]\n{routing}\n",
        provider("first", first_url.unwrap_or(&first.base_url)),
        provider("second", &second.base_url),
    );
    let mut opts = AppOptions::default().config(&config);
    opts.env.push(("MOCK_OPENAI_KEY".into(), MOCK_UPSTREAM_KEY.into()));
    (TestApp::spawn_with(opts).await.unwrap(), first, second)
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map_or(0, |v| v.trim().parse().unwrap())
}

async fn open_routes(app: &TestApp) -> Vec<String> {
    let text = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("layers_route_open{route=\""))
        .map(|l| l.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_failing_first_route_is_retried_then_the_second_serves_and_bills() {
    let (app, first, second) =
        two_routes(None, "attempts_per_route = 2\nbackoff_base_ms = 20\nbreaker_failures = 100").await;
    first.reply_with(Reply::Status { status: 500, message: "down".into(), retry_after: None });
    let (user, key) = app.user_with_key("fallover@example.com", "10").await;
    let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "served by the second route");
    assert_eq!(v["model"], ROUTED);
    assert_eq!(first.requests().len(), 2, "one retry on the first route");
    assert_eq!(second.requests().len(), 1);
    assert_eq!(second.last_request().body["model"], "gpt-b");
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!((rows[0].provider.as_str(), rows[0].upstream_model.as_str()), ("second", "gpt-b"));
    // 10 × 1.0 + 4 × 2.0 US$/Mtok = 18e-6 US$ = 1,800 micro-credits; only the answer is paid.
    assert_eq!(rows[0].cost.0, 1800);
    assert_eq!(metric(&app, "layers_upstream_attempts_total").await, 3);
    assert_eq!(metric(&app, "layers_upstream_retries_total").await, 1);
    assert_eq!(metric(&app, "layers_upstream_fallovers_total").await, 1);

    // Streamed too: the failure happens before any byte reached the client.
    let events = sse_data(app.chat(&key, &stream_body(ROUTED, "hi", false)).send().await.unwrap()).await;
    assert_eq!(streamed_text(&events), "served by the second route");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn provider_preferences_arrange_a_models_routes() {
    let (app, first, second) = two_routes(None, "attempts_per_route = 1\nbreaker_failures = 100").await;
    let (_, key) = app.user_with_key("prefs@example.com", "10").await;
    let with = |provider: Value| {
        let mut body = chat_body(ROUTED, "hi");
        body["provider"] = provider;
        body
    };
    // `order` puts the second route first: the first is never called, and no upstream sees the field.
    let resp = app.chat(&key, &with(serde_json::json!({"order": ["second"]}))).send().await.unwrap();
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    assert_eq!(first.requests().len(), 0);
    assert!(second.last_request().body.get("provider").is_none());
    // `ignore` leaves only the second.
    let resp = app.chat(&key, &with(serde_json::json!({"ignore": ["FIRST"]}))).send().await.unwrap();
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    assert_eq!(first.requests().len(), 0);
    // Without fallbacks a failing route is the answer: the second is not tried.
    first.reply_with(Reply::Status { status: 500, message: "down".into(), retry_after: None });
    let calls = second.requests().len();
    let resp = app.chat(&key, &with(serde_json::json!({"allow_fallbacks": false}))).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(second.requests().len(), calls);
    // With them (the default), the second serves.
    let resp = app.chat(&key, &with(serde_json::json!({"order": ["first"]}))).send().await.unwrap();
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    // A price ceiling under the model's price refuses it, naming the field.
    let (status, err) =
        error_of(app.chat(&key, &with(serde_json::json!({"max_price": {"completion": 1.5}}))).send().await.unwrap())
            .await;
    assert_eq!((status, err["param"].as_str()), (400, Some("provider.max_price.completion")));
}

#[tokio::test]
async fn a_hanging_or_unreachable_first_route_falls_over() {
    let (app, first, second) = two_routes(None, "attempts_per_route = 1\nbreaker_failures = 100").await;
    first.reply_with(Reply::Hang);
    let (_user, key) = app.user_with_key("hang@example.com", "10").await;
    let t = Instant::now();
    let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    assert!(t.elapsed() >= Duration::from_millis(400), "waited the first-byte timeout first");
    assert_eq!(second.requests().len(), 1);

    // A port nobody listens on: connection refused, next route.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let (app, _first, second) =
        two_routes(Some(&dead), "attempts_per_route = 2\nbackoff_base_ms = 10\nbreaker_failures = 100").await;
    let (_user, key) = app.user_with_key("refused@example.com", "10").await;
    let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "second");
    assert_eq!(second.requests().len(), 1);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_then_falls_over() {
    let (app, first, second) =
        two_routes(None, "attempts_per_route = 2\nbackoff_max_ms = 2000\nbreaker_failures = 100").await;
    first.reply_with(Reply::Status { status: 429, message: "slow down".into(), retry_after: Some(1) });
    let (_user, key) = app.user_with_key("429@example.com", "10").await;
    let t = Instant::now();
    let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_secs(1), "the upstream's retry-after was honoured");
    assert_eq!((first.requests().len(), second.requests().len()), (2, 1));
}

#[tokio::test]
async fn nothing_is_retried_once_a_stream_has_started_or_when_the_client_is_wrong() {
    let (app, first, second) =
        two_routes(None, "attempts_per_route = 3\nbackoff_base_ms = 10\nbreaker_failures = 100").await;
    let (_user, key) = app.user_with_key("started@example.com", "10").await;
    let events = sse_data(app.chat(&key, &stream_body(ROUTED, "mock:cut", false)).send().await.unwrap()).await;
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    assert!(streamed_text(&events).starts_with(" w0"), "the client got the first route's words");
    assert_eq!((first.requests().len(), second.requests().len()), (1, 0), "no retry after the first byte");

    first.reply_with(Reply::Status { status: 400, message: "bad tool schema".into(), retry_after: None });
    let (status, err) = error_of(app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(err["message"], "bad tool schema");
    assert_eq!((first.requests().len(), second.requests().len()), (2, 0), "the client's mistake goes nowhere else");
}

#[tokio::test]
async fn the_breaker_opens_skips_the_route_and_closes_after_a_good_probe() {
    let (app, first, second) =
        two_routes(None, "attempts_per_route = 1\nbreaker_failures = 2\nbreaker_cooldown_ms = 600").await;
    first.reply_with(Reply::Status { status: 503, message: "unavailable".into(), retry_after: None });
    let (_user, key) = app.user_with_key("breaker@example.com", "10").await;
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap().status(), 200);
    }
    assert_eq!(first.requests().len(), 2);
    assert_eq!(open_routes(&app).await, ["first/gpt-a"]);
    assert_eq!(metric(&app, "layers_route_breaker_opened_total").await, 1);
    // Open: the first route is not even tried.
    for _ in 0..3 {
        let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
        assert_eq!(resp.headers()["x-layers-provider"], "second");
    }
    assert_eq!(first.requests().len(), 2);
    assert_eq!(metric(&app, "layers_route_breaker_skips_total").await, 3);
    // After the cool-down a probe goes through; the route has recovered, so it closes.
    first.reply_with(Reply::Answer { content: "first again".into(), prompt_tokens: 5, completion_tokens: 2 });
    app.core.clock.advance(Duration::from_millis(700));
    let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
    assert_eq!(resp.headers()["x-layers-provider"], "first");
    assert!(open_routes(&app).await.is_empty());
    assert_eq!(second.requests().len(), 5);

    // Every route out of rotation: a clear 503 with retry-after, without waiting on anyone. (The
    // second route served five requests in this window, so it goes out once its failures
    // catch up with those successes.)
    first.reply_with(Reply::Status { status: 503, message: "unavailable".into(), retry_after: None });
    second.reply_with(Reply::Status { status: 503, message: "unavailable".into(), retry_after: None });
    let mut overloaded = 0;
    loop {
        let resp = app.chat(&key, &chat_body(ROUTED, "hi")).send().await.unwrap();
        let has_retry_after = resp.headers().contains_key("retry-after");
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 503);
        if err["code"] == "upstream_unavailable" {
            assert!(has_retry_after);
            break;
        }
        assert_eq!(err["code"], "upstream_overloaded");
        overloaded += 1;
        assert!(overloaded <= 6, "both routes should be out by now");
    }
    assert!(overloaded >= 2, "a route with recent successes is not taken out at the first failures");
}

#[tokio::test]
async fn a_route_serves_again_after_its_cooldown_even_when_the_probe_was_the_clients_fault() {
    let mock = MockOpenAi::start().await;
    let routing = "[routing]\nattempts_per_route = 1\nbreaker_failures = 2\nbreaker_cooldown_ms = 500";
    let app = TestApp::spawn_with(AppOptions::default().config(routing).with_mock(&mock)).await.unwrap();
    let (_user, key) = app.user_with_key("recovers@example.com", "10").await;
    mock.reply_with(Reply::Status { status: 500, message: "burst".into(), retry_after: None });
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap().status(), 502);
    }
    let (status, err) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str().unwrap()), (503, "upstream_unavailable"));
    // The failures stop. After the cool-down the first call is the probe, and it is refused as
    // the client's own mistake: that says nothing of the route, so the next call probes again
    // at once rather than a cool-down later.
    mock.reply_with(Reply::Answer { content: "back".into(), prompt_tokens: 5, completion_tokens: 2 });
    app.core.clock.advance(Duration::from_millis(600));
    let (status, _) = error_of(app.chat(&key, &chat_body(MOCK_MODEL, "mock:400")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    let started = Instant::now();
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the route stayed out after a probe that was the client's fault");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(open_routes(&app).await.is_empty());
    // And it stays in rotation.
    for _ in 0..5 {
        assert_eq!(app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap().status(), 200);
    }
}
