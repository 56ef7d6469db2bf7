//! A mock of Anthropic's Messages API (`POST /v1/messages`) speaking the documented wire format:
//! message objects with content blocks and usage (cache reads and writes included), the SSE
//! event sequence `message_start`, `content_block_start`, `ping`, `content_block_delta`
//! (`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`),
//! `content_block_stop`, `message_delta`, `message_stop`, and error bodies
//! `{"type":"error","error":{"type","message"}}` (529 `overloaded_error` included). It insists on
//! `x-api-key` and `anthropic-version` as Anthropic does. Every request is recorded.
//!
//! What it answers is chosen by the last user text, so mixed traffic can run at once:
//! `mock:tool` (two tool calls), `mock:think` (thinking, then text), `mock:think-huge` (a 5 MiB
//! thinking block), `mock:json` (answers the
//! forced `json_response` tool), `mock:cache` (usage with cache reads and writes),
//! `mock:overloaded-early` (streamed: `message_start`, then an `overloaded_error` event),
//! `mock:400`, `mock:429`, `mock:500`, `mock:529`, `mock:hang`, `mock:cut` (the stream stops
//! mid-message), `mock:error-event` (an `error` event mid-stream); anything else gets a text
//! answer.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::mock_openai::{sse_response, Recorded, StreamEnd};
use crate::mock_server::{MockServer, Recorder};

/// The text every plain answer carries (with a multi-byte character, for split-read tests).
pub const ANSWER: &str = "Bonjour from the mock Claude — 東京 included.";

#[derive(Clone)]
struct Shared {
    rec: Recorder<Recorded>,
}

pub struct MockAnthropic {
    /// The base URL to configure (`…/v1`).
    pub base_url: String,
    server: MockServer<Recorded>,
}

impl MockAnthropic {
    pub async fn start() -> MockAnthropic {
        let server =
            MockServer::start(|rec| Router::new().route("/v1/messages", post(messages)).with_state(Shared { rec }))
                .await;
        MockAnthropic { base_url: server.url("/v1"), server }
    }

    /// Writes each SSE event in 3-byte pieces (inside `\n\n` and multi-byte characters).
    pub fn split_writes(&self, on: bool) {
        self.server.split_writes(on);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    pub fn last_request(&self) -> Recorded {
        self.server.last_request()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut resp = (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body.to_string())
        .into_response();
    resp.headers_mut().insert("request-id", "req_mock_error".parse().unwrap());
    resp
}

fn command(body: &Value) -> String {
    let Some(last) = body["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user")) else {
        return String::new();
    };
    let text = match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    };
    text.strip_prefix("mock:").map(|c| c.split_whitespace().next().unwrap_or("").to_owned()).unwrap_or_default()
}

async fn messages(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.rec.record(Recorded { headers: headers.clone(), body: body.clone() });
    if headers.get("x-api-key").is_none() {
        return error(401, "authentication_error", "x-api-key header is required");
    }
    if headers.get("anthropic-version").is_none() {
        return error(400, "invalid_request_error", "anthropic-version: header is required");
    }
    if !body["max_tokens"].is_u64() {
        return error(400, "invalid_request_error", "max_tokens: Field required");
    }
    let model = body["model"].as_str().unwrap_or("claude").to_owned();
    let cmd = command(&body);
    let mut end = StreamEnd::Finish;
    let mut error_event = false;
    match cmd.as_str() {
        "400" => return error(400, "invalid_request_error", "messages: roles must alternate"),
        "429" => {
            let mut r = error(429, "rate_limit_error", "Number of requests has exceeded your rate limit");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
        "500" => return error(500, "api_error", "Internal server error"),
        "529" => return error(529, "overloaded_error", "Overloaded"),
        "hang" => std::future::pending::<()>().await,
        "cut" => end = StreamEnd::Cut,
        "error-event" => error_event = true,
        // Accepted with 200, then overloaded before any content (as Anthropic does under load).
        "overloaded-early" if body["stream"].as_bool() == Some(true) => {
            let start = json!({"type": "message_start", "message": {"id": "msg_x", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 21, "output_tokens": 1}}});
            let events = vec![
                event("message_start", &start),
                event(
                    "error",
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
            ];
            return sse_response(events, Duration::ZERO, StreamEnd::Finish, false);
        }
        _ => {}
    }
    let message = message_for(&cmd, &model, &body);
    if !body["stream"].as_bool().unwrap_or(false) {
        return (
            StatusCode::OK,
            [("content-type", "application/json"), ("request-id", "req_mock")],
            message.to_string(),
        )
            .into_response();
    }
    let mut events = stream_events(&message);
    if end == StreamEnd::Cut {
        events.truncate(4);
    }
    if error_event {
        events.truncate(4);
        events.push(event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
    }
    let split = s.rec.split_writes();
    // A failing stream paces its events, so the client has its first chunks before the failure.
    let delay = if end == StreamEnd::Cut || error_event { Duration::from_millis(5) } else { Duration::ZERO };
    sse_response(events, delay, end, split)
}

/// The whole message Anthropic would answer.
fn message_for(cmd: &str, model: &str, req: &Value) -> Value {
    let mut usage = json!({"input_tokens": 21, "output_tokens": 9,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"});
    let (content, stop) = match cmd {
        "tool" => (
            json!([
                {"type": "text", "text": "Let me check both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Rome", "unit": "c"}}
            ]),
            "tool_use",
        ),
        "think" => (
            json!([
                {"type": "thinking", "thinking": "The user wants a short answer.", "signature": "EqQBCgIYAhIM"},
                {"type": "text", "text": ANSWER}
            ]),
            "end_turn",
        ),
        "think-huge" => (
            json!([
                {"type": "thinking", "thinking": "x".repeat(5 * 1024 * 1024), "signature": "EqQBCgIYAhIM"},
                {"type": "text", "text": ANSWER}
            ]),
            "end_turn",
        ),
        "json" => {
            let name = req["tool_choice"]["name"].as_str().unwrap_or("json_response");
            (
                json!([{"type": "tool_use", "id": "toolu_01J", "name": name, "input": {"answer": 42, "unit": "none"}}]),
                "tool_use",
            )
        }
        _ => {
            if cmd == "cache" {
                usage["cache_creation_input_tokens"] = json!(1000);
                usage["cache_read_input_tokens"] = json!(3000);
            }
            (json!([{"type": "text", "text": ANSWER}]), "end_turn")
        }
    };
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage,
    })
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The event sequence of Anthropic's streaming documentation for `message`.
fn stream_events(message: &Value) -> Vec<String> {
    let usage = &message["usage"];
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut events = vec![event("message_start", &json!({"type": "message_start", "message": start}))];
    for (i, block) in message["content"].as_array().unwrap().iter().enumerate() {
        let (empty, deltas): (Value, Vec<Value>) = match block["type"].as_str().unwrap() {
            "text" => (
                json!({"type": "text", "text": ""}),
                pieces(block["text"].as_str().unwrap())
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect(),
            ),
            "thinking" => (
                json!({"type": "thinking", "thinking": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ],
            ),
            _ => {
                let input = block["input"].to_string();
                let mid = input.len() / 2;
                (
                    json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                    vec![
                        json!({"type": "input_json_delta", "partial_json": ""}),
                        json!({"type": "input_json_delta", "partial_json": &input[..mid]}),
                        json!({"type": "input_json_delta", "partial_json": &input[mid..]}),
                    ],
                )
            }
        };
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": empty}),
        ));
        if i == 0 {
            events.push(event("ping", &json!({"type": "ping"})));
        }
        for d in deltas {
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": i, "delta": d})));
        }
        events.push(event("content_block_stop", &json!({"type": "content_block_stop", "index": i})));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
                "usage": {"output_tokens": usage["output_tokens"]}}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}
