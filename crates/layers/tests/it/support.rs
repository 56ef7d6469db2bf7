//! Helpers shared by the end-to-end tests.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

pub use layers_testkit::app::MOCK_MODEL;

/// A minimal chat body.
pub fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn stream_body(model: &str, text: &str, include_usage: bool) -> Value {
    let mut b = chat_body(model, text);
    b["stream"] = json!(true);
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// Reads a whole SSE response and returns its `data:` payloads.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let mut body = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("stream stalled") {
        body.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(body).expect("the stream is valid UTF-8");
    text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// Concatenated `delta.content` of chunk payloads.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"].get(0).and_then(|c| c["delta"]["content"].as_str()).map(str::to_owned))
        .collect()
}

/// The error object of a JSON error response, checking the shape of SPEC §2.4.
pub async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let header_id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    let err = body["error"].clone();
    for field in ["message", "type", "code"] {
        assert!(err[field].is_string(), "error.{field} missing in {body}");
    }
    assert!(err.get("param").is_some(), "error.param missing in {body}");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "request_id matches x-request-id");
    (status, err)
}

/// A `/proc/self/status` figure in KiB (`VmRSS`, `VmHWM`…), 0 where there is none.
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
