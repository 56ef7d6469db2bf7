//! The native `anthropic` adapter end to end: Layers' OpenAI-shaped API in front, the mock
//! Anthropic Messages API behind, with the request the mock received checked field by field,
//! streaming under split reads, tool calls, thinking, JSON mode, errors, and exact billing.

use layers_domain::KeyEnv;
use layers_testkit::app::{MOCK_ANTHROPIC_KEY, MOCK_CLAUDE};
use layers_testkit::mock_anthropic::ANSWER;
use layers_testkit::{AppOptions, MockAnthropic, TestApp};
use serde_json::{json, Value};

use crate::support::*;

async fn app() -> (TestApp, MockAnthropic) {
    app_with("").await
}

async fn app_with(config: &str) -> (TestApp, MockAnthropic) {
    let mock = MockAnthropic::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock_anthropic(&mock).config(config)).await.unwrap();
    (app, mock)
}

/// Claude Sonnet prices in micro-credits per token ×1e6: input 3, cached 0.30, output 15 US$/Mtok,
/// and 1 credit = US$0.01, so 1 US$/Mtok = 100 micro-credits per token.
fn cost(uncached: u64, cached: u64, output: u64) -> i64 {
    ((uncached * 300 + cached * 30 + output * 1500) as f64).ceil() as i64
}

#[tokio::test]
async fn a_chat_is_translated_both_ways_and_billed_exactly() {
    let (app, mock) = app().await;
    let (user, key) = app.user_with_key("claude@example.com", "100").await;
    let body = json!({
        "model": MOCK_CLAUDE, "max_tokens": 500, "temperature": 0.2, "stop": ["\n\nHuman:"],
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": "A pixel."},
            {"role": "user", "content": "More?"}
        ]
    });
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "mock-anthropic");
    let charged = resp.headers()["x-layers-credits-charged"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MOCK_CLAUDE);
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!((v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()), (Some(21), Some(9)));
    assert_eq!(v["usage"]["total_tokens"], 30);
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);

    let seen = mock.last_request();
    assert_eq!(seen.headers["x-api-key"], MOCK_ANTHROPIC_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none(), "Anthropic authenticates by x-api-key only");
    assert_eq!(
        seen.body,
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 500, "temperature": 0.2, "stop_sequences": ["\n\nHuman:"],
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Describe"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A pixel."}]},
                {"role": "user", "content": [{"type": "text", "text": "More?"}]}
            ]
        })
    );

    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].cost.0, cost(21, 0, 9));
    assert_eq!(rows[0].provider, "mock-anthropic");
    assert_eq!(rows[0].upstream_model, "claude-sonnet-4-5");
    assert_eq!(charged, "0.019800");
}

#[tokio::test]
async fn cache_reads_and_writes_are_prompt_tokens_billed_at_their_own_rates() {
    let (app, mock) = app().await;
    let (user, key) = app.user_with_key("cache@example.com", "100").await;
    let mut body = chat_body(MOCK_CLAUDE, "mock:cache");
    body["cache"] = json!(true);
    body["messages"] =
        json!([{"role": "system", "content": "long shared context"}, {"role": "user", "content": "mock:cache"}]);
    let v: Value = app.chat(&key, &body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 21 + 3000 + 1000);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 3000);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cache_creation_tokens"], 1000);
    let seen = mock.last_request().body;
    assert_eq!(seen["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(seen["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].usage.cached_tokens, 3000);
    // Cache writes at 3.75 US$/Mtok (1.25 × input): 375 micro-credits per token.
    assert_eq!(rows[0].cost.0, cost(21, 3000, 9) + 1000 * 375);
}

#[tokio::test]
async fn tool_calls_round_trip_non_streamed_and_streamed() {
    let (app, mock) = app().await;
    let (user, key) = app.user_with_key("tools@example.com", "100").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let body = json!({"model": MOCK_CLAUDE, "tools": tools, "tool_choice": "required",
        "messages": [{"role": "user", "content": "mock:tool"}]});
    let v: Value = app.chat(&key, &body).send().await.unwrap().json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "Let me check both.");
    assert_eq!(
        msg["tool_calls"][0],
        json!({"id": "toolu_01A", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})
    );
    assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{\"city\":\"Rome\",\"unit\":\"c\"}");
    let seen = mock.last_request().body;
    assert_eq!(seen["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(seen["tool_choice"], json!({"type": "any"}));

    // The same, streamed: tool call deltas with ids first, then arguments in pieces.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = sse_data(app.chat(&key, &streamed).send().await.unwrap()).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut args = ["".to_owned(), "".to_owned()];
    let mut ids = Vec::new();
    let mut finish = None;
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let c: Value = serde_json::from_str(e).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], MOCK_CLAUDE);
        for call in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                ids.push(id.to_owned());
            }
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(ids, ["toolu_01A", "toolu_01B"]);
    assert_eq!(args, ["{\"city\":\"Paris\"}", "{\"city\":\"Rome\",\"unit\":\"c\"}"]);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(streamed_text(&events), "Let me check both.");

    // The tool results go back as tool_result blocks in one user turn.
    let follow = json!({"model": MOCK_CLAUDE, "tools": tools, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": msg["tool_calls"]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "21C"}
    ]});
    assert_eq!(app.chat(&key, &follow).send().await.unwrap().status(), 200);
    let seen = mock.last_request().body;
    assert_eq!(seen["messages"][1]["content"][1]["input"], json!({"city": "Rome", "unit": "c"}));
    assert_eq!(
        seen["messages"][2]["content"][1],
        json!({"type": "tool_result", "tool_use_id": "toolu_01B",
        "content": [{"type": "text", "text": "21C"}]})
    );
    let rows = app.wait_for_usage(&user, 3).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.cost.0 == cost(21, 0, 9)), "{rows:?}");
}

#[tokio::test]
async fn streams_survive_split_reads_and_bill_without_asking_for_usage() {
    let (app, mock) = app().await;
    mock.split_writes(true);
    let (user, key) = app.user_with_key("stream@example.com", "100").await;
    let resp = app.chat(&key, &stream_body(MOCK_CLAUDE, "hello", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), ANSWER, "multi-byte characters split across reads arrive whole");
    assert!(events.iter().all(|e| !e.contains("\"usage\"")), "usage is hidden unless asked for");
    assert_eq!(mock.last_request().body["stream"], true);
    let rows = app.wait_for_usage(&user, 1).await;
    assert!(rows[0].streamed);
    assert_eq!((rows[0].usage.prompt_tokens, rows[0].usage.completion_tokens), (21, 9));
    assert_eq!(rows[0].cost.0, cost(21, 0, 9));

    let events = sse_data(app.chat(&key, &stream_body(MOCK_CLAUDE, "hello", true)).send().await.unwrap()).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 21);
    assert_eq!(usage["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn thinking_and_json_mode() {
    let (app, mock) = app().await;
    let (_user, key) = app.user_with_key("think@example.com", "100").await;
    let mut body = chat_body(MOCK_CLAUDE, "mock:think");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    body["max_tokens"] = json!(4096);
    let v: Value = app.chat(&key, &body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "The user wants a short answer.");
    assert_eq!(v["layers"]["reasoning"], "The user wants a short answer.");
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(mock.last_request().body["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
    body["stream"] = json!(true);
    let events = sse_data(app.chat(&key, &body).send().await.unwrap()).await;
    let reasoning: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasoning, "The user wants a short answer.");
    assert_eq!(streamed_text(&events), ANSWER);

    let mut json_body = chat_body(MOCK_CLAUDE, "mock:json");
    json_body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer",
        "schema": {"type": "object", "properties": {"answer": {"type": "integer"}}}}});
    let v: Value = app.chat(&key, &json_body).send().await.unwrap().json().await.unwrap();
    let content: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"answer": 42, "unit": "none"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    json_body["stream"] = json!(true);
    let events = sse_data(app.chat(&key, &json_body).send().await.unwrap()).await;
    let content: Value = serde_json::from_str(&streamed_text(&events)).unwrap();
    assert_eq!(content["answer"], 42);
}

#[tokio::test]
async fn provider_errors_map_to_our_shape_and_cost_nothing() {
    // One attempt per request and no breaker, so each case shows its own mapping.
    let (app, _mock) = app_with("[routing]\nattempts_per_route = 1\nbreaker_failures = 1000").await;
    let (user, key) = app.user_with_key("errors@example.com", "100").await;
    let cases = [
        ("mock:400", 400, "upstream_rejected_request"),
        ("mock:429", 429, "upstream_rate_limited"),
        ("mock:500", 502, "upstream_error"),
        ("mock:529", 503, "upstream_overloaded"),
    ];
    for (text, status, code) in cases {
        let (got, err) = error_of(app.chat(&key, &chat_body(MOCK_CLAUDE, text)).send().await.unwrap()).await;
        assert_eq!((got, err["code"].as_str().unwrap()), (status, code), "{text}");
        if status == 400 {
            assert_eq!(err["message"], "messages: roles must alternate", "the provider's reason is relayed");
        }
    }
    // A parameter Anthropic cannot honour is refused before any upstream call, by name.
    let mut body = chat_body(MOCK_CLAUDE, "hi");
    body["logprobs"] = json!(true);
    let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("logprobs")));
    assert_eq!(err["code"], "unsupported_parameter");

    // Mid-stream: an error event, and a cut connection, end the stream with an error, no [DONE].
    for text in ["mock:error-event", "mock:cut"] {
        let resp = app.chat(&key, &stream_body(MOCK_CLAUDE, text, false)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{text}: {:?}", resp.text().await);
        let events = sse_data(resp).await;
        assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap_or_else(|_| panic!("{text}: {events:?}"));
        assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    }
    let rows = app.wait_for_usage(&user, 7).await;
    // Failures before any output cost nothing; a stream that failed after output reached the
    // client pays what the provider produced: its reported input and the output delivered.
    for r in &rows {
        if r.streamed {
            assert!(r.charged.0 > 0 && r.charged == r.cost && r.usage.prompt_tokens == 21, "{r:?}");
        } else {
            assert_eq!(r.charged.0, 0, "{r:?}");
        }
    }
}

#[tokio::test]
async fn test_keys_never_reach_anthropic() {
    let (app, mock) = app().await;
    let user = app.create_user("tester@example.com", layers_domain::Tier::Free).await;
    let key = app.create_key(&user, KeyEnv::Test).await;
    let resp = app.chat(&key, &chat_body(MOCK_CLAUDE, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "sandbox");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn the_messages_endpoint_speaks_anthropics_errors_and_headers() {
    let (app, mock) = app_with("[routing]\nattempts_per_route = 1\nbreaker_failures = 1000").await;
    let (_user, key) = app.user_with_key("dialect@example.com", "100").await;
    let post = |key: &str, body: Value| {
        app.http
            .post(format!("{}/v1/messages", app.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
    };
    let msg =
        |text: &str| json!({"model": MOCK_CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": text}]});

    let beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
    let resp = post(&key, msg("hi")).header("anthropic-beta", beta).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last_request().headers["anthropic-beta"], beta, "betas reach Anthropic");
    // A beta that changes what a request can cost (a 1M-token window, one-hour cache writes)
    // is refused: the hold could not cover it.
    for priced in ["context-1m-2025-08-07", "extended-cache-ttl-2025-04-11"] {
        let resp = post(&key, msg("hi")).header("anthropic-beta", priced).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{priced}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains(priced), "{v}");
    }
    let id = resp.headers()["x-request-id"].clone();
    assert_eq!(resp.headers()["request-id"], id);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], ANSWER);

    let error = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let has_id = resp.headers().contains_key("request-id");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert!(has_id && v["request_id"].is_string(), "{v}");
        (status, v["error"]["type"].as_str().unwrap().to_owned(), v["error"]["message"].as_str().unwrap().to_owned())
    };
    // Overload before the first byte: Anthropic's 529.
    assert_eq!(error(post(&key, msg("mock:529")).send().await.unwrap()).await.0, 529);
    assert_eq!(error(post(&key, msg("mock:529")).send().await.unwrap()).await.1, "overloaded_error");
    // Auth errors by x-api-key, with the exact messages of SPEC §2.4.
    let (status, kind, message) = error(post("lyr_live_sk_typo", msg("hi")).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str(), message.as_str()), (401, "authentication_error", "Invalid API key format"));
    let (status, kind, _) =
        error(app.http.post(format!("{}/v1/messages", app.url)).json(&msg("hi")).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (401, "authentication_error"));
    // No credit: billing_error.
    let broke = app.create_user("broke@example.com", layers_domain::Tier::Free).await;
    let broke_key = app.create_key(&broke, KeyEnv::Live).await;
    let (status, kind, _) = error(post(&broke_key, msg("hi")).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (402, "billing_error"));
    // Malformed: invalid_request_error naming the field.
    let (status, kind, message) =
        error(post(&key, json!({"model": MOCK_CLAUDE, "messages": []})).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("max_tokens"), "{message}");
    let (status, kind, _) = error(
        post(&key, json!({"model": "nobody/nothing", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, kind.as_str()), (404, "not_found_error"));

    // Mid-stream failure: an `error` event, never message_stop.
    let mut body = msg("mock:error-event");
    body["stream"] = json!(true);
    let text = post(&key, body).send().await.unwrap().text().await.unwrap();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(text.contains("event: error\n"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
}

/// `mock/claude-then-gpt`: the mock Anthropic API first, the mock OpenAI upstream second.
async fn claude_then_gpt(extra: &str) -> (TestApp, MockAnthropic, layers_testkit::MockOpenAi) {
    let (claude, gpt) = (MockAnthropic::start().await, layers_testkit::MockOpenAi::start().await);
    let two = format!(
        "[[models]]\nname = \"mock/claude-then-gpt\"\n\
         routes = [{{ provider = \"mock-anthropic\", model = \"claude-sonnet-4-5\" }}, {{ provider = \"mock\", model = \"gpt-4o-mini\" }}]\n\
         input_per_mtok = 3.0\noutput_per_mtok = 15.0\ncontext_window = 200000\nmax_output_tokens = 8192\n{extra}"
    );
    let opts = AppOptions::default().with_mock_anthropic(&claude).with_mock(&gpt).config(&two);
    (TestApp::spawn_with(opts).await.unwrap(), claude, gpt)
}

#[tokio::test]
async fn a_route_that_cannot_express_the_request_passes_it_on_without_hiding_earlier_failures() {
    let (app, claude, gpt) = claude_then_gpt("").await;
    let (_user, key) = app.user_with_key("unsupported@example.com", "100").await;
    // Anthropic has no logprobs: the OpenAI-compatible route serves it.
    let mut body = chat_body("mock/claude-then-gpt", "hi");
    body["logprobs"] = json!(true);
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "mock");
    assert!(claude.requests().is_empty());
    // The first route fails, the second cannot express the request: the client hears of the
    // failure, not of a parameter problem in a route it never chose.
    let reversed = "[[models]]\nname = \"mock/gpt-then-claude\"\n\
        routes = [{ provider = \"mock\", model = \"gpt-4o-mini\" }, { provider = \"mock-anthropic\", model = \"claude-sonnet-4-5\" }]\n\
        input_per_mtok = 3.0\noutput_per_mtok = 15.0\ncontext_window = 200000\nmax_output_tokens = 8192\n\
        [routing]\nattempts_per_route = 1\nbreaker_failures = 100\n";
    let (app, claude2, _gpt2) = claude_then_gpt(reversed).await;
    let (_user, key) = app.user_with_key("unsupported2@example.com", "100").await;
    let mut body = chat_body("mock/gpt-then-claude", "mock:500");
    body["temperature"] = json!(1.5);
    let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (502, Some("upstream_error")), "{err}");
    assert!(claude2.requests().is_empty(), "Anthropic refused the temperature before any call");
    let _ = gpt;
}

#[tokio::test]
async fn an_overload_reported_in_stream_before_any_content_falls_over_to_the_next_route() {
    let (app, claude, _gpt) = claude_then_gpt("").await;
    let (user, key) = app.user_with_key("early@example.com", "100").await;
    let resp =
        app.chat(&key, &stream_body("mock/claude-then-gpt", "mock:overloaded-early", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "mock");
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "Hello from the mock upstream!");
    assert_eq!(claude.requests().len(), 1, "not retried on the route that said overloaded mid-stream");
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].provider, "mock");
}

#[tokio::test]
async fn option_objects_cannot_change_the_billed_model_or_the_output_cap() {
    let (app, mock) = app().await;
    let (_user, key) = app.user_with_key("sneaky@example.com", "100").await;
    for (opts, param) in [
        (json!({"model": "claude-opus-4-1"}), "anthropic.model"),
        (json!({"max_tokens": 64000}), "anthropic.max_tokens"),
        (json!({"messages": []}), "anthropic.messages"),
    ] {
        let mut body = chat_body(MOCK_CLAUDE, "hi");
        body["anthropic"] = opts;
        let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)));
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn signed_thinking_round_trips_for_multi_turn_tool_use() {
    let (app, mock) = app().await;
    let (_user, key) = app.user_with_key("signed@example.com", "100").await;
    let post = |body: Value| app.http.post(format!("{}/v1/messages", app.url)).header("x-api-key", &key).json(&body);
    let ask = json!({"model": MOCK_CLAUDE, "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "mock:think"}]});
    let m: Value = post(ask.clone()).send().await.unwrap().json().await.unwrap();
    let thinking = m["content"][0].clone();
    assert_eq!(thinking["type"], "thinking");
    assert_eq!(thinking["signature"], "EqQBCgIYAhIM", "the signature Anthropic gave");

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let text = post(streamed).send().await.unwrap().text().await.unwrap();
    let signed = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .any(|e| e["delta"]["type"] == "signature_delta" && e["delta"]["signature"] == "EqQBCgIYAhIM");
    assert!(signed, "{text}");

    // Sent back before a tool result, the signed block reaches Anthropic first in the turn.
    let follow = json!({"model": MOCK_CLAUDE, "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
    "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [thinking, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}
    ]});
    assert_eq!(post(follow).send().await.unwrap().status(), 200);
    let sent = mock.last_request().body;
    assert_eq!(sent["messages"][1]["content"][0]["signature"], "EqQBCgIYAhIM");
    assert_eq!(sent["messages"][1]["content"][1]["type"], "tool_use");

    // The chat API carries the same blocks as `thinking_blocks`.
    let v: Value = app.chat(&key, &json!({"model": MOCK_CLAUDE, "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": [{"role": "user", "content": "mock:think"}]}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["thinking_blocks"][0]["signature"], "EqQBCgIYAhIM");
}

#[tokio::test]
async fn messages_usage_splits_cache_reads_and_writes_like_anthropic() {
    let (app, _mock) = app().await;
    let (_user, key) = app.user_with_key("cacheusage@example.com", "100").await;
    let body = json!({"model": MOCK_CLAUDE, "max_tokens": 64,
        "system": [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "mock:cache"}]});
    let m: Value = app
        .http
        .post(format!("{}/v1/messages", app.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 21, "output_tokens": 9, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 1000})
    );
}

#[tokio::test]
async fn todays_messages_fields_reach_an_anthropic_route_unchanged() {
    let (app, mock) = app().await;
    let (_, key) = app.user_with_key("today@example.com", "10").await;
    let body = json!({
        "model": MOCK_CLAUDE, "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}]},
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "docs"}],
    });
    let resp = app
        .http
        .post(format!("{}/v1/messages", app.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "claude-code-20250219, oauth-2025-04-20,context-management-2025-06-27")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = mock.last_request();
    for field in ["thinking", "output_config", "context_management", "mcp_servers"] {
        assert_eq!(sent.body[field], body[field], "{field} passes through unchanged");
    }
    let beta = sent.headers["anthropic-beta"].to_str().unwrap();
    assert_eq!(beta, "claude-code-20250219,context-management-2025-06-27", "the client's login beta stays here");
    // What would change the price beyond the hold is refused by name, even on Anthropic routes.
    for (field, value) in [("speed", json!("fast")), ("inference_geo", json!("us")), ("container", json!("c_1"))] {
        let mut priced = body.clone();
        priced[field] = value;
        let resp = app
            .http
            .post(format!("{}/v1/messages", app.url))
            .header("x-api-key", &key)
            .json(&priced)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{field}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains(field), "{err}");
    }
    // OpenRouter's fields work here too, and never reach Anthropic.
    let mut fallback = body.clone();
    fallback["models"] = json!(["sandbox/echo"]);
    fallback["provider"] = json!({"allow_fallbacks": true});
    let resp = app.http.post(format!("{}/v1/messages", app.url)).header("x-api-key", &key).json(&fallback).send().await;
    assert_eq!(resp.unwrap().status(), 200);
    let sent = mock.last_request();
    assert!(sent.body.get("models").is_none() && sent.body.get("provider").is_none(), "{}", sent.body);
}
