//! The request path through a mock OpenAI-compatible upstream: forwarding, streaming, usage.

use layers_domain::{KeyEnv, Tier};
use layers_testkit::app::MOCK_UPSTREAM_KEY;
use layers_testkit::mock_openai::Reply;
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::support::*;

async fn app_with_mock(opts: AppOptions) -> Option<(TestApp, MockOpenAi)> {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(opts.with_mock(&mock)).await?;
    Some((app, mock))
}

async fn forwards_and_records(opts: AppOptions) {
    let Some((app, mock)) = app_with_mock(opts).await else { return };
    let (user, key) = app.user_with_key("alice@example.com", "10").await;
    let mut body = chat_body(MOCK_MODEL, "Say hello");
    body["temperature"] = json!(0.3);
    body["seed"] = json!(42);
    let resp = app.chat(&key, &body).header("x-request-id", "client-chosen-id-1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-id-1");
    assert_eq!(resp.headers()["x-layers-provider"], "mock");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], MOCK_MODEL, "the public model name, not the upstream's");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from the mock upstream!");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // 12 × 0.15 + 6 × 0.60 US$/Mtok = 5.4e-6 US$ = 0.00054 credits.
    assert_eq!(v["layers"]["credits_used"], "0.000540");
    assert!(v["layers"]["latency_ms"].is_u64());

    // The upstream saw the operator's key, the upstream model id, and the client's extras.
    let seen = mock.last_request();
    assert_eq!(seen.headers["authorization"], format!("Bearer {MOCK_UPSTREAM_KEY}"));
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["temperature"], 0.3);
    assert_eq!(seen.body["seed"], 42);
    assert!(seen.body.get("stream").is_none());

    let rows = app.wait_for_usage(&user, 1).await;
    let row = &rows[0];
    assert_eq!(row.request_id, "client-chosen-id-1");
    assert_eq!((row.usage.prompt_tokens, row.usage.completion_tokens), (12, 6));
    assert_eq!(row.cost.0, 540);
    assert_eq!(row.status, 200);
    assert_eq!(row.model, MOCK_MODEL);
    assert_eq!(row.provider, "mock");
    assert!(!row.streamed && !row.usage_estimated);
}

#[tokio::test]
async fn forwards_and_records_on_sqlite() {
    forwards_and_records(AppOptions::default()).await;
}

#[tokio::test]
async fn forwards_and_records_on_postgres() {
    forwards_and_records(AppOptions::default().postgres()).await;
}

#[tokio::test]
async fn streams_and_bills_even_when_the_client_does_not_ask_for_usage() {
    let (app, mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let (user, key) = app.user_with_key("bob@example.com", "10").await;

    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "hi", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "Hello from the mock upstream!");
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["model"], MOCK_MODEL);
        assert!(v.get("usage").is_none(), "usage shown although not asked for: {e}");
        assert!(!v["choices"].as_array().unwrap().is_empty(), "usage-only chunk leaked: {e}");
    }
    // The gateway asked the upstream for usage anyway.
    assert_eq!(mock.last_request().body["stream_options"]["include_usage"], true);

    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "hi", true)).send().await.unwrap();
    let events = sse_data(resp).await;
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 12);
    assert_eq!(usage_chunk["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);

    let rows = app.wait_for_usage(&user, 2).await;
    for row in &rows {
        assert!(row.streamed && !row.usage_estimated);
        assert_eq!((row.usage.prompt_tokens, row.usage.completion_tokens, row.cost.0), (12, 6, 540));
    }
}

#[tokio::test]
async fn sse_split_across_reads_arrives_intact() {
    let (app, mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let (_, key) = app.user_with_key("carol@example.com", "10").await;
    let text = "Grüße 你好世界 — emoji 👋🏽 and \"quotes\"\\n";
    mock.reply_with(Reply::Answer { content: text.into(), prompt_tokens: 5, completion_tokens: 9 });
    mock.split_writes(true);
    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "hi", true)).send().await.unwrap();
    let events = sse_data(resp).await;
    assert_eq!(streamed_text(&events), text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn test_keys_are_answered_by_the_sandbox_and_never_billed() {
    let (app, mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let user = app.create_user("dave@example.com", Tier::Free).await;
    let key = app.create_key(&user, KeyEnv::Test).await;
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "ping")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "sandbox");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], MOCK_MODEL);
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("ping"));
    assert_eq!(v["layers"]["credits_used"], "0.000000");
    assert!(mock.requests().is_empty(), "a test key reached a paid upstream");
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].cost.0, 0);
    assert_eq!(rows[0].provider, "sandbox");
}

#[tokio::test]
async fn the_sandbox_serves_the_embedded_default() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key("erin@example.com", "1").await;
    let resp = app.chat(&key, &stream_body("sandbox/echo", "hello sandbox", true)).send().await.unwrap();
    let events = sse_data(resp).await;
    assert!(streamed_text(&events).contains("hello sandbox"));
    let rows = app.wait_for_usage(&user, 1).await;
    assert!(rows[0].cost.0 > 0, "live keys pay for the sandbox model like any other");
}

#[tokio::test]
async fn bare_model_names_resolve_when_unambiguous() {
    let (app, _mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let (_, key) = app.user_with_key("frank@example.com", "1").await;
    let resp = app.chat(&key, &chat_body("echo", "x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "sandbox/echo");
}

#[tokio::test]
async fn models_health_and_readiness() {
    let (app, _mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let v: Value = app.get("/v1/models").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let mock = data.iter().find(|m| m["id"] == MOCK_MODEL).expect("mock model listed");
    assert_eq!(mock["object"], "model");
    assert_eq!(mock["owned_by"], "mock");
    assert!(mock["created"].is_i64());
    assert_eq!(mock["pricing"]["prompt"], "0.00000015");
    assert_eq!(mock["pricing"]["completion"], "0.0000006");
    assert_eq!(mock["context_length"], 128000);
    assert_eq!(mock["top_provider"]["max_completion_tokens"], 16384);
    assert!(data.iter().all(|m| m["id"] != "openai/gpt-4o"), "models of disabled providers are not listed");
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("layers_requests_total{status=\"200\"}"), "{metrics}");
    for name in ["layers_auth_db_lookups_total", "layers_billing_shortfalls_total", "layers_settlement_backlog"] {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
}

#[tokio::test]
async fn the_gateways_chat_extras_reach_an_openai_compatible_upstream_in_its_dialect() {
    let (app, mock) = app_with_mock(AppOptions::default()).await.unwrap();
    let (_user, key) = app.user_with_key("extras@example.com", "10").await;
    let mut body = chat_body(MOCK_MODEL, "hi");
    body["cache"] = json!(true);
    body["anthropic"] = json!({"top_k": 3});
    body["openai"] = json!({"seed": 4, "store": false});
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 20000});
    assert_eq!(app.chat(&key, &body).send().await.unwrap().status(), 200);
    let seen = mock.last_request().body;
    assert_eq!((seen["seed"].as_u64(), seen["store"].as_bool()), (Some(4), Some(false)));
    assert_eq!(seen["reasoning_effort"], "high");
    for absent in ["cache", "anthropic", "openai", "thinking", "google"] {
        assert!(seen.get(absent).is_none(), "{absent} leaked upstream: {seen}");
    }
    // What this upstream cannot do is refused by name, before it is called.
    let before = mock.requests().len();
    for (field, value) in [("web_search", json!(true)), ("search_domains", json!(["arxiv.org"]))] {
        let mut body = chat_body(MOCK_MODEL, "hi");
        body[field] = value;
        let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(field)));
    }
    assert_eq!(mock.requests().len(), before);
}

#[tokio::test]
async fn test_keys_reach_real_routes_only_when_allowed_within_a_daily_cap_and_are_never_billed() {
    let opts = AppOptions::default().config("[test_keys]\nreal_routes = true\ndaily_requests = 2");
    let (app, mock) = app_with_mock(opts).await.unwrap();
    let (user, _live) = app.user_with_key("tester@example.com", "10").await;
    let key = app.create_key(&user, KeyEnv::Test).await;
    for _ in 0..2 {
        let resp = app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-layers-provider"], "mock");
        assert!(resp.headers().get("x-layers-credits-charged").is_none());
    }
    assert_eq!(mock.requests().len(), 2);
    let resp = app.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let (status, err) = error_of(resp).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("test_key_daily_limit")));
    assert_eq!(mock.requests().len(), 2);
    let rows = app.wait_for_usage(&user, 2).await;
    assert!(rows.iter().all(|r| r.charged.0 == 0 && r.cost.0 == 0), "{rows:?}");
    assert_eq!(app.core.accounts.balance(user.id).await.unwrap().0, 10_000_000, "nothing was debited");
}

#[tokio::test]
async fn with_redis_the_test_key_daily_cap_is_the_deployments() {
    let mock = MockOpenAi::start().await;
    let Some(opts) = AppOptions::default().postgres().redis() else { return };
    let shared = opts.config.clone();
    let caps = "[test_keys]\nreal_routes = true\ndaily_requests = 2";
    let a = TestApp::spawn_with(opts.with_mock(&mock).config(caps)).await.unwrap();
    let b_opts = AppOptions::default().postgres().second_node_of(&a).config(&shared).with_mock(&mock).config(caps);
    let b = TestApp::spawn_with(b_opts).await.unwrap();
    let (user, _live) = a.user_with_key("tester-redis@example.com", "10").await;
    let key = a.create_key(&user, KeyEnv::Test).await;
    assert_eq!(a.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap().status(), 200);
    assert_eq!(b.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap().status(), 200);
    // Counted per node, each would still allow one more; counted in Redis, the day is used up.
    for node in [&a, &b] {
        let (status, err) = error_of(node.chat(&key, &chat_body(MOCK_MODEL, "hi")).send().await.unwrap()).await;
        assert_eq!((status, err["code"].as_str()), (429, Some("test_key_daily_limit")));
    }
    assert_eq!(mock.requests().len(), 2);
}
