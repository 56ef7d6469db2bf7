//! A mock of Google's Gemini API speaking the documented wire format:
//! `POST /v1beta/models/{model}:generateContent` answers a `GenerateContentResponse`
//! (`candidates[].content.parts`, `finishReason`, `usageMetadata` with thoughts and cached
//! tokens, `modelVersion`, `responseId`); `:streamGenerateContent?alt=sse` answers the same as
//! `data:` events separated by `\r\n\r\n`, ending by closing the stream; errors are
//! `{"error":{"code","message","status"}}`. It insists on `x-goog-api-key`. Every request is
//! recorded.
//!
//! The last user text chooses the answer: `mock:tool` (two function calls), `mock:think`
//! (a thought part, then text), `mock:blocked` (a blocked prompt), `mock:400`, `mock:429`,
//! `mock:500`, `mock:503`, `mock:cut` (closes before the finish reason), `mock:error-event`;
//! anything else gets a text answer (a JSON object when `responseMimeType` asks for JSON).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::mock_openai::{sse_response, Recorded, StreamEnd};
use crate::mock_server::{MockServer, Recorder};

/// The text every plain answer carries (with multi-byte characters, for split-read tests).
pub const ANSWER: &str = "Hola from the mock Gemini — ünïcödé ✓.";

#[derive(Clone)]
struct Shared {
    rec: Recorder<(String, Recorded)>,
}

pub struct MockGemini {
    /// The base URL to configure (`…/v1beta`).
    pub base_url: String,
    server: MockServer<(String, Recorded)>,
}

impl MockGemini {
    pub async fn start() -> MockGemini {
        let server = MockServer::start(|rec| {
            Router::new().route("/v1beta/models/{call}", post(generate)).with_state(Shared { rec })
        })
        .await;
        MockGemini { base_url: server.url("/v1beta"), server }
    }

    pub fn split_writes(&self, on: bool) {
        self.server.split_writes(on);
    }

    /// Each request with the path (and query) it was sent to.
    pub fn requests(&self) -> Vec<(String, Recorded)> {
        self.server.requests()
    }

    pub fn last_request(&self) -> (String, Recorded) {
        self.server.last_request()
    }
}

fn error(status: u16, code_name: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status, "message": message, "status": code_name}});
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json; charset=UTF-8")], body.to_string())
        .into_response()
}

fn command(body: &Value) -> String {
    let Some(last) = body["contents"].as_array().and_then(|c| c.iter().rev().find(|c| c["role"] == "user")) else {
        return String::new();
    };
    let text: String = last["parts"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect();
    text.strip_prefix("mock:").map(|c| c.split_whitespace().next().unwrap_or("").to_owned()).unwrap_or_default()
}

async fn generate(
    State(s): State<Shared>,
    Path(call): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut path = format!("models/{call}");
    if let Some(alt) = query.get("alt") {
        path.push_str(&format!("?alt={alt}"));
    }
    s.rec.record((path, Recorded { headers: headers.clone(), body: body.clone() }));
    if headers.get("x-goog-api-key").is_none() {
        return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
    }
    let Some((model, method)) = call.split_once(':') else {
        return error(404, "NOT_FOUND", "Unknown method");
    };
    if method == "batchEmbedContents" {
        let n = body["requests"].as_array().map_or(0, Vec::len);
        let dims = body["requests"][0]["outputDimensionality"].as_u64().unwrap_or(3) as usize;
        let embeddings: Vec<Value> =
            (0..n).map(|i| json!({"values": (0..dims).map(|d| (i + d) as f64 * 0.125).collect::<Vec<_>>()})).collect();
        return (
            StatusCode::OK,
            [("content-type", "application/json; charset=UTF-8")],
            json!({"embeddings": embeddings}).to_string(),
        )
            .into_response();
    }
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" if query.get("alt").map(String::as_str) == Some("sse") => true,
        _ => return error(404, "NOT_FOUND", "Unknown method"),
    };
    if !body["contents"].is_array() {
        return error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified");
    }
    let cmd = command(&body);
    match cmd.as_str() {
        "400" => return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"foo\""),
        "429" => return error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        "500" => return error(500, "INTERNAL", "An internal error has occurred."),
        "503" => return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        _ => {}
    }
    let json_mode = body["generationConfig"]["responseMimeType"] == "application/json";
    let chunks = if json_mode {
        vec![response(model, json!([{"text": "{\"answer\": 42, \"unit\": \"none\"}"}]), Some("STOP"), true)]
    } else {
        chunks_for(&cmd, model)
    };
    if !streaming {
        return (StatusCode::OK, [("content-type", "application/json; charset=UTF-8")], merge(&chunks).to_string())
            .into_response();
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\r\n\r\n")).collect();
    let mut end = StreamEnd::Finish;
    let mut delay = Duration::ZERO;
    if cmd == "cut" {
        events.pop();
        end = StreamEnd::Cut;
        delay = Duration::from_millis(5);
    }
    if cmd == "error-event" {
        events.pop();
        events.push(format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
        ));
        delay = Duration::from_millis(5);
    }
    let split = s.rec.split_writes();
    sse_response(events, delay, end, split)
}

fn usage(last: bool) -> Value {
    if last {
        json!({"promptTokenCount": 17, "candidatesTokenCount": 8, "thoughtsTokenCount": 5, "totalTokenCount": 30,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 17}]})
    } else {
        json!({"promptTokenCount": 17, "totalTokenCount": 17})
    }
}

fn response(model: &str, parts: Value, finish: Option<&str>, last: bool) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate], "usageMetadata": usage(last), "modelVersion": model, "responseId": "mockResp01"})
}

/// The streamed responses for a command; the non-streamed answer is their merge.
fn chunks_for(cmd: &str, model: &str) -> Vec<Value> {
    match cmd {
        "blocked" => vec![
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage(true), "modelVersion": model}),
        ],
        "tool" => vec![
            response(model, json!([{"text": "Checking."}]), None, false),
            response(
                model,
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                       {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]),
                Some("STOP"),
                true,
            ),
        ],
        other => {
            let mut out = Vec::new();
            if other == "think" {
                out.push(response(model, json!([{"text": "Considering the greeting.", "thought": true}]), None, false));
            }
            let words: Vec<&str> = ANSWER.split_inclusive(' ').collect();
            let n = words.len();
            for (i, w) in words.into_iter().enumerate() {
                let last = i + 1 == n;
                out.push(response(model, json!([{ "text": w }]), last.then_some("STOP"), last));
            }
            out
        }
    }
}

/// What `generateContent` answers: the streamed responses merged into one.
fn merge(chunks: &[Value]) -> Value {
    let mut merged = chunks.last().cloned().unwrap_or(Value::Null);
    if merged["candidates"].is_null() {
        return merged;
    }
    let mut parts: Vec<Value> = Vec::new();
    for c in chunks {
        for p in c["candidates"][0]["content"]["parts"].as_array().into_iter().flatten() {
            match (parts.last_mut(), p["text"].as_str()) {
                (Some(last), Some(t)) if last["text"].is_string() && last["thought"] == p["thought"] => {
                    let joined = format!("{}{t}", last["text"].as_str().unwrap());
                    last["text"] = json!(joined);
                }
                _ => parts.push(p.clone()),
            }
        }
    }
    merged["candidates"][0]["content"]["parts"] = Value::Array(parts);
    merged
}
