//! A mock OpenAI-compatible upstream that speaks the Chat Completions wire format as OpenAI
//! documents it (non-streamed bodies, `chat.completion.chunk` SSE, `usage: null` on every chunk
//! and a final usage chunk when `stream_options.include_usage` is set, `data: [DONE]`), with
//! failure modes for tests. Every request is recorded for assertions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::mock_server::{MockServer, Recorder};

/// What the mock does with the next requests.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A normal answer (streamed word by word when the request streams).
    Answer { content: String, prompt_tokens: u32, completion_tokens: u32 },
    /// A normal answer whose usage also reports hidden reasoning (part of the completion).
    Reasoned { content: String, prompt_tokens: u32, completion_tokens: u32, reasoning_tokens: u32 },
    /// An HTTP error with an OpenAI error body.
    Status { status: u16, message: String, retry_after: Option<u64> },
    /// Accept the connection and never answer.
    Hang,
    /// A hostile upstream: a non-streamed answer whose content is `bytes` long, or, streamed,
    /// one event of that size.
    Huge { bytes: usize },
    /// A redirect (`status` 301/302/303/307/308) to `location`.
    Redirect { status: u16, location: String },
    /// Stream `chunks` content pieces, `delay` apart; then stall forever (`stall`) or close
    /// without `[DONE]` (`cut`), or finish normally.
    SlowStream { pieces: Vec<String>, delay: Duration, end: StreamEnd, prompt_tokens: u32 },
    /// Like `SlowStream` finishing normally, but the final usage reports `completion_tokens`
    /// of which `reasoning_tokens` were hidden reasoning (an o-series model).
    Thinking { pieces: Vec<String>, delay: Duration, prompt_tokens: u32, completion_tokens: u32, reasoning_tokens: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Finish,
    Stall,
    Cut,
    /// Everything (finish and usage chunks included) but `data: [DONE]`, then a clean close.
    NoDone,
}

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct Shared {
    reply: Arc<Mutex<Reply>>,
    rec: Recorder<Recorded>,
    /// Random delay before answering, in milliseconds (min, max).
    latency_ms: Arc<Mutex<(u64, u64)>>,
}

pub struct MockOpenAi {
    pub base_url: String,
    server: MockServer<Recorded>,
    shared: Shared,
}

impl MockOpenAi {
    pub async fn start() -> MockOpenAi {
        let reply = Arc::new(Mutex::new(Reply::Answer {
            content: "Hello from the mock upstream!".into(),
            prompt_tokens: 12,
            completion_tokens: 6,
        }));
        let latency_ms = Arc::new(Mutex::new((0, 0)));
        let mut shared = None;
        let server = MockServer::start(|rec| {
            let state = Shared { reply, rec, latency_ms };
            shared = Some(state.clone());
            Router::new()
                .route("/v1/chat/completions", post(chat))
                .route("/v1/embeddings", post(embeddings))
                .route("/v1/images/generations", post(images))
                .with_state(state)
        })
        .await;
        let shared = shared.expect("the router was built");
        MockOpenAi { base_url: server.url("/v1"), server, shared }
    }

    pub fn reply_with(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Answers after a random delay between `min` and `max` milliseconds.
    pub fn latency(&self, min_ms: u64, max_ms: u64) {
        *self.shared.latency_ms.lock().unwrap() = (min_ms, max_ms.max(min_ms));
    }

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

async fn chat(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.rec.record(Recorded { headers, body: body.clone() });
    let reply = reply_for(&body).unwrap_or_else(|| s.reply.lock().unwrap().clone());
    let split = s.rec.split_writes();
    let (min, max) = *s.latency_ms.lock().unwrap();
    if max > 0 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        tokio::time::sleep(Duration::from_millis(min + nanos % (max - min + 1))).await;
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    answer(reply, &model, streaming, include_usage, split).await
}

/// The mock's answer to a chat request, in OpenAI's wire format.
async fn answer(reply: Reply, model: &str, streaming: bool, include_usage: bool, split: bool) -> Response {
    match reply {
        Reply::Reasoned { content, prompt_tokens, completion_tokens, reasoning_tokens } if !streaming => {
            let mut u = usage(prompt_tokens, completion_tokens);
            u["completion_tokens_details"]["reasoning_tokens"] = json!(reasoning_tokens);
            let v = completion_body(model, &content, u);
            (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
        }
        Reply::Reasoned { content, prompt_tokens, completion_tokens, .. } => {
            let events = stream_events(model, &words(&content), include_usage, prompt_tokens, Some(completion_tokens));
            sse_response(events, Duration::ZERO, StreamEnd::Finish, split)
        }
        Reply::Thinking { pieces, delay, prompt_tokens, completion_tokens, reasoning_tokens } => {
            let mut events = stream_events(model, &pieces, include_usage, prompt_tokens, Some(completion_tokens));
            if include_usage {
                let at = events.len() - 2;
                events[at] =
                    events[at].replace("\"reasoning_tokens\":0", &format!("\"reasoning_tokens\":{reasoning_tokens}"));
            }
            sse_response(events, delay, StreamEnd::Finish, split)
        }
        Reply::Answer { content, prompt_tokens, completion_tokens } if !streaming => {
            let v = completion_body(model, &content, usage(prompt_tokens, completion_tokens));
            (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
        }
        Reply::Answer { content, prompt_tokens, completion_tokens } => {
            let pieces = words(&content);
            let events = stream_events(model, &pieces, include_usage, prompt_tokens, Some(completion_tokens));
            sse_response(events, Duration::ZERO, StreamEnd::Finish, split)
        }
        Reply::SlowStream { pieces, delay, end, prompt_tokens } => {
            let mut events = stream_events(model, &pieces, include_usage, prompt_tokens, None);
            if end == StreamEnd::NoDone {
                events.pop();
            } else if end != StreamEnd::Finish {
                // Keep the role chunk and the content; drop finish, usage and [DONE].
                events.truncate(pieces.len() + 1);
            }
            sse_response(events, delay, end, split)
        }
        Reply::Status { status, message, retry_after } => {
            let v = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
            let mut resp =
                (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], v.to_string())
                    .into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
            }
            resp
        }
        Reply::Huge { bytes } if !streaming => {
            // Built by splicing, not by serialising 30 MB of JSON: the mock must stay quick.
            let v = completion_body(model, "@@HUGE@@", usage(10, 10)).to_string();
            let body = v.replacen("@@HUGE@@", &"x".repeat(bytes), 1);
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Reply::Huge { bytes } => {
            let events = vec![format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(bytes))];
            sse_response(events, Duration::ZERO, StreamEnd::Finish, false)
        }
        Reply::Redirect { status, location } => {
            (StatusCode::from_u16(status).unwrap(), [("location", location)], "").into_response()
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn completion_body(model: &str, content: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-mock123",
        "object": "chat.completion",
        "created": 1_730_000_000,
        "model": format!("{model}-2024-07-18"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_mock"
    })
}

/// Embeddings as OpenAI answers them: one 4-dimensional vector per input (floats, or base64
/// of little-endian f32 when asked), usage of 5 tokens per input.
async fn embeddings(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.rec.record(Recorded { headers, body: body.clone() });
    let inputs = match &body["input"] {
        Value::Array(a) if a.iter().all(Value::is_u64) => 1,
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let v = [0.25f32, -0.5, 0.75, i as f32];
            let embedding = if base64 {
                use base64::Engine;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = 5 * inputs;
    let v = json!({"object": "list", "data": data, "model": body["model"],
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
}

/// A 1×1 PNG per image asked for, as `b64_json`, the way gpt-image-1 answers.
async fn images(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.rec.record(Recorded { headers, body: body.clone() });
    if body["prompt"].as_str().is_some_and(|p| p.starts_with("mock:500")) {
        let v = json!({"error": {"message": "mock failure", "type": "server_error", "param": null, "code": null}});
        return (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], v.to_string())
            .into_response();
    }
    let n = body["n"].as_u64().unwrap_or(1);
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let data: Vec<Value> = (0..n).map(|_| json!({"b64_json": png})).collect();
    // gpt-image models say what they made (`auto`, or nothing, comes out medium and square);
    // DALL·E says nothing of it.
    let asked = |k: &str, auto: &str| body[k].as_str().filter(|v| *v != "auto").unwrap_or(auto).to_owned();
    let dalle = body["model"].as_str().is_some_and(|m| m.starts_with("dall-e"));
    let (quality, size) = if dalle {
        (Value::Null, Value::Null)
    } else {
        (json!(asked("quality", "medium")), json!(asked("size", "1024x1024")))
    };
    let v = json!({"created": 1_730_000_000, "data": data, "quality": quality, "size": size,
                   "usage": {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282,
                             "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}});
    (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
}

/// Per-request behaviour chosen by the last user message, so mixed traffic can run at once:
/// `mock:500`, `mock:hang`, `mock:stall`, `mock:cut`, `mock:nodone`, `mock:slow`, `mock:slow=MS`
/// (20 pieces, MS apart), `mock:tokens=N` (completion tokens), `mock:usage=P,C[,R]` (prompt,
/// completion and reasoning tokens), `mock:think=C` (a slow stream of 20 pieces whose final usage
/// reports C completion tokens, all but 20 of them hidden reasoning).
fn reply_for(body: &Value) -> Option<Reply> {
    let content = &body["messages"].as_array()?.iter().rev().find(|m| m["role"] == "user")?["content"];
    // A plain string, or the first text part of a multi-part message.
    let text = content.as_str().or_else(|| content.as_array()?.iter().find_map(|p| p["text"].as_str()))?;
    let cmd = text.strip_prefix("mock:")?;
    let slow = |end| Reply::SlowStream {
        pieces: (0..20).map(|i| format!(" w{i}")).collect(),
        delay: Duration::from_millis(5),
        end,
        prompt_tokens: 10,
    };
    let word = cmd.split_whitespace().next()?;
    if let Some(ms) = word.strip_prefix("slow=") {
        return Some(Reply::SlowStream {
            pieces: (0..20).map(|i| format!(" w{i}")).collect(),
            delay: Duration::from_millis(ms.parse().ok()?),
            end: StreamEnd::Finish,
            prompt_tokens: 10,
        });
    }
    Some(match word {
        "500" => Reply::Status { status: 500, message: "mock failure".into(), retry_after: None },
        "400" => Reply::Status { status: 400, message: "mock: invalid request".into(), retry_after: None },
        "hang" => Reply::Hang,
        "stall" => slow(StreamEnd::Stall),
        "cut" => slow(StreamEnd::Cut),
        "nodone" => slow(StreamEnd::NoDone),
        "slow" => slow(StreamEnd::Finish),
        other if other.starts_with("usage=") => {
            let n: Vec<u32> = other.strip_prefix("usage=")?.split(',').filter_map(|x| x.parse().ok()).collect();
            let (prompt, completion) = (*n.first()?, *n.get(1)?);
            Reply::Reasoned {
                content: "counted answer".into(),
                prompt_tokens: prompt,
                completion_tokens: completion,
                reasoning_tokens: n.get(2).copied().unwrap_or(0),
            }
        }
        other if other.starts_with("think=") => {
            let completion: u32 = other.strip_prefix("think=")?.parse().ok()?;
            Reply::Thinking {
                pieces: (0..20).map(|i| format!(" w{i}")).collect(),
                delay: Duration::from_millis(20),
                prompt_tokens: 10,
                completion_tokens: completion,
                reasoning_tokens: completion.saturating_sub(20),
            }
        }
        other => {
            let n = other.strip_prefix("tokens=")?.parse().ok()?;
            Reply::Answer { content: "counted answer".into(), prompt_tokens: 10, completion_tokens: n }
        }
    })
}

fn usage(prompt: u32, completion: u32) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        out.push(if i == 0 { w.to_owned() } else { format!(" {w}") });
    }
    out
}

/// The SSE events OpenAI sends: role chunk, content chunks, finish chunk, usage chunk, [DONE].
fn stream_events(
    model: &str,
    pieces: &[String],
    include_usage: bool,
    prompt: u32,
    completion: Option<u32>,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": "chatcmpl-mock123", "object": "chat.completion.chunk", "created": 1_730_000_000,
            "model": format!("{model}-2024-07-18"), "service_tier": "default", "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)];
    for p in pieces {
        events.push(chunk(json!({"content": p}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let completion = completion.unwrap_or(pieces.len() as u32);
        let u = json!({
            "id": "chatcmpl-mock123", "object": "chat.completion.chunk", "created": 1_730_000_000,
            "model": format!("{model}-2024-07-18"), "service_tier": "default", "system_fingerprint": "fp_mock",
            "choices": [], "usage": usage(prompt, completion),
        });
        events.push(format!("data: {u}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

pub(crate) fn sse_response(events: Vec<String>, delay: Duration, end: StreamEnd, split: bool) -> Response {
    let mut pieces: Vec<Bytes> = Vec::new();
    for e in events {
        if split {
            // Split inside events, inside "\n\n" and inside multi-byte characters.
            for chunk in e.as_bytes().chunks(3) {
                pieces.push(Bytes::copy_from_slice(chunk));
            }
        } else {
            pieces.push(Bytes::from(e));
        }
    }
    let state = (pieces.into_iter(), true, false);
    let stream = futures_util::stream::unfold(state, move |(mut it, first, ended)| async move {
        if ended {
            return None;
        }
        if !first && (delay > Duration::ZERO || split) {
            tokio::time::sleep(if split { Duration::from_millis(1) } else { delay }).await;
        }
        match it.next() {
            Some(b) => Some((Ok::<_, std::io::Error>(b), (it, false, false))),
            None => match end {
                StreamEnd::Stall => std::future::pending().await,
                // An error aborts the connection mid-body, as a crashed upstream would.
                StreamEnd::Cut => Some((Err(std::io::Error::other("cut")), (it, false, true))),
                StreamEnd::Finish | StreamEnd::NoDone => None,
            },
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap()
}
