//! The native `gemini` adapter end to end: Layers' OpenAI-shaped API in front, the mock Gemini
//! API behind, with the request the mock received checked field by field, streaming under split
//! reads (Gemini separates events with `\r\n\r\n` and ends by closing), function calls,
//! thoughts, safety blocks, errors, and exact billing.

use layers_testkit::app::{MOCK_GEMINI, MOCK_GEMINI_KEY};
use layers_testkit::mock_gemini::ANSWER;
use layers_testkit::{AppOptions, MockGemini, TestApp};
use serde_json::{json, Value};

use crate::support::*;

async fn app_with(config: &str) -> (TestApp, MockGemini) {
    let mock = MockGemini::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock_gemini(&mock).config(config)).await.unwrap();
    (app, mock)
}

/// Gemini 2.5 Flash prices: 0.30 in, 2.50 out US$/Mtok = 30 and 250 micro-credits per token.
/// The mock reports 17 prompt tokens and 8 candidate + 5 thought tokens (thoughts are output).
const COST: i64 = 17 * 30 + 13 * 250;

#[tokio::test]
async fn a_chat_is_translated_both_ways_and_billed_exactly() {
    let (app, mock) = app_with("").await;
    let (user, key) = app.user_with_key("gemini@example.com", "100").await;
    let body = json!({
        "model": MOCK_GEMINI, "max_tokens": 256, "temperature": 0.1,
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}]
    });
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "mock-gemini");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MOCK_GEMINI);
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 17);
    assert_eq!(v["usage"]["completion_tokens"], 13);
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 5);

    let (path, seen) = mock.last_request();
    assert_eq!(path, "models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], MOCK_GEMINI_KEY);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(
        seen.body,
        json!({
            "systemInstruction": {"parts": [{"text": "Be kind."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "generationConfig": {"maxOutputTokens": 256, "temperature": 0.1}
        })
    );
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].cost.0, COST);
    assert_eq!(
        (rows[0].usage.prompt_tokens, rows[0].usage.completion_tokens, rows[0].usage.reasoning_tokens),
        (17, 13, 5)
    );
}

#[tokio::test]
async fn streams_end_at_the_close_survive_split_reads_and_bill() {
    let (app, mock) = app_with("").await;
    mock.split_writes(true);
    let (user, key) = app.user_with_key("gstream@example.com", "100").await;
    let events = sse_data(app.chat(&key, &stream_body(MOCK_GEMINI, "hello", true)).send().await.unwrap()).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), ANSWER);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 13);
    assert_eq!(mock.last_request().0, "models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    let rows = app.wait_for_usage(&user, 1).await;
    assert!(rows[0].streamed);
    assert_eq!(rows[0].cost.0, COST);
}

#[tokio::test]
async fn function_calls_thoughts_and_blocks() {
    let (app, mock) = app_with("").await;
    let (_user, key) = app.user_with_key("gtools@example.com", "100").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let body = json!({"model": MOCK_GEMINI, "tools": tools, "tool_choice": "auto",
        "messages": [{"role": "user", "content": "mock:tool"}]});
    let v: Value = app.chat(&key, &body).send().await.unwrap().json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "Checking.");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}));
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    let seen = mock.last_request().1.body;
    assert_eq!(seen["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    assert_eq!(seen["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));

    // Streamed: each call arrives whole, with its id.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = sse_data(app.chat(&key, &streamed).send().await.unwrap()).await;
    let deltas: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .collect();
    assert_eq!(deltas.len(), 2);
    assert_eq!(deltas[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(deltas[1]["index"], 1);

    // Results go back as functionResponse parts named after the calls.
    let follow = json!({"model": MOCK_GEMINI, "tools": tools, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"temp\":18}"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "21C"}
    ]});
    assert_eq!(app.chat(&key, &follow).send().await.unwrap().status(), 200);
    let seen = mock.last_request().1.body;
    assert_eq!(seen["contents"][1]["role"], "model");
    assert_eq!(
        seen["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"temp": 18}}})
    );
    assert_eq!(seen["contents"][2]["parts"][1]["functionResponse"]["response"], json!({"content": "21C"}));

    let mut think = chat_body(MOCK_GEMINI, "mock:think");
    think["reasoning_effort"] = json!("low");
    let v: Value = app.chat(&key, &think).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "Considering the greeting.");
    assert_eq!(v["layers"]["reasoning"], "Considering the greeting.");
    assert_eq!(
        mock.last_request().1.body["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );

    let v: Value = app.chat(&key, &chat_body(MOCK_GEMINI, "mock:blocked")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["message"]["content"], "");
}

#[tokio::test]
async fn provider_errors_map_to_our_shape_and_cost_nothing() {
    let (app, _mock) = app_with("[routing]\nattempts_per_route = 1\nbreaker_failures = 1000").await;
    let (user, key) = app.user_with_key("gerrors@example.com", "100").await;
    for (text, status, code) in [
        ("mock:400", 400, "upstream_rejected_request"),
        ("mock:429", 429, "upstream_rate_limited"),
        ("mock:500", 502, "upstream_error"),
        ("mock:503", 503, "upstream_overloaded"),
    ] {
        let (got, err) = error_of(app.chat(&key, &chat_body(MOCK_GEMINI, text)).send().await.unwrap()).await;
        assert_eq!((got, err["code"].as_str().unwrap()), (status, code), "{text}");
    }
    let mut body = chat_body(MOCK_GEMINI, "hi");
    body["n"] = json!(3);
    let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("n")));
    for text in ["mock:cut", "mock:error-event"] {
        let resp = app.chat(&key, &stream_body(MOCK_GEMINI, text, false)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{text}");
        let events = sse_data(resp).await;
        assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    }
    let rows = app.wait_for_usage(&user, 7).await;
    // Failures before any output cost nothing; after output, what was delivered is charged.
    for r in &rows {
        let delivered = r.usage.completion_tokens > 0;
        assert_eq!(r.charged.0 > 0, r.streamed && delivered, "{r:?}");
        assert_eq!(r.charged, r.cost, "{r:?}");
    }
}

#[tokio::test]
async fn images_by_url_are_fetched_and_sent_inline() {
    let png: &'static [u8] = b"\x89PNG\r\n\x1a\nfake-png-bytes";
    let site =
        layers_testkit::files::serve(vec![("/cat.png", "image/png", png), ("/page.html", "text/html", b"<html>")])
            .await;
    let (app, mock) = app_with("").await;
    let (_user, key) = app.user_with_key("gimage@example.com", "100").await;
    let with_image = |url: String| {
        json!({"model": MOCK_GEMINI, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let resp = app.chat(&key, &with_image(format!("{site}/cat.png"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let inline = &mock.last_request().1.body["contents"][0]["parts"][1]["inlineData"];
    assert_eq!(inline["mimeType"], "image/png");
    assert_eq!(inline["data"], "iVBORw0KGgpmYWtlLXBuZy1ieXRlcw==", "the fetched bytes, base64");

    let (status, err) = error_of(app.chat(&key, &with_image(format!("{site}/page.html"))).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("messages[0].content[1]")));
    assert!(err["message"].as_str().unwrap().contains("not a PNG"), "{err}");
}
