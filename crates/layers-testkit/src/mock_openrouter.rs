//! A mock of OpenRouter's API, shaped as OpenRouter documents it (https://openrouter.ai/docs):
//! `POST /api/v1/chat/completions` (with `provider`, `usage.cost`, `native_finish_reason`, SSE
//! ending in a usage chunk when `usage.include` is set), `GET /api/v1/key`,
//! `GET /api/v1/generation?id=` and `GET /api/v1/models`. The switch-from-OpenRouter test runs
//! the same client script against this and against Layers and compares the fields.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::mock_server::{MockServer, Recorder};

pub struct MockOpenRouter {
    /// `http://127.0.0.1:PORT/api/v1`, the base URL OpenRouter's clients use.
    pub base_url: String,
    server: MockServer<Value>,
}

const ANSWER: &str = "Hello from the OpenRouter mock.";
const MODEL: &str = "openai/gpt-4o-mini";

impl MockOpenRouter {
    pub async fn start() -> MockOpenRouter {
        let server = MockServer::start(|rec| {
            Router::new()
                .route("/api/v1/chat/completions", post(chat))
                .route("/api/v1/key", get(key))
                .route("/api/v1/generation", get(generation))
                .route("/api/v1/models", get(models))
                .with_state(rec)
        })
        .await;
        MockOpenRouter { base_url: server.url("/api/v1"), server }
    }

    /// The chat bodies received.
    pub fn requests(&self) -> Vec<Value> {
        self.server.requests()
    }
}

fn usage() -> Value {
    json!({
        "prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
        "cost": 0.0000060, "is_byok": false,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": null},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
    })
}

async fn chat(State(rec): State<Recorder<Value>>, Json(body): Json<Value>) -> Response {
    rec.record(body.clone());
    let streaming = body["stream"] == true;
    let created = 1_760_000_000;
    if !streaming {
        return Json(json!({
            "id": "gen-1760000000-abcdefghijklmnop", "provider": "OpenAI", "model": MODEL,
            "object": "chat.completion", "created": created, "system_fingerprint": "fp_mock",
            "choices": [{"logprobs": null, "finish_reason": "stop", "native_finish_reason": "stop", "index": 0,
                         "message": {"role": "assistant", "content": ANSWER, "refusal": null, "reasoning": null}}],
            "usage": usage(),
        }))
        .into_response();
    }
    let wants_usage = body["usage"]["include"] == true || body["stream_options"]["include_usage"] == true;
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "gen-1760000000-abcdefghijklmnop", "provider": "OpenAI", "model": MODEL,
               "object": "chat.completion.chunk", "created": created, "system_fingerprint": "fp_mock",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish,
                            "logprobs": null}]})
    };
    let mut events = vec![
        ": OPENROUTER PROCESSING".to_owned(),
        format!("data: {}", chunk(json!({"role": "assistant", "content": ""}), Value::Null)),
    ];
    for word in ANSWER.split_inclusive(' ') {
        events.push(format!("data: {}", chunk(json!({"role": "assistant", "content": word}), Value::Null)));
    }
    events.push(format!("data: {}", chunk(json!({"role": "assistant", "content": ""}), json!("stop"))));
    if wants_usage {
        let mut last = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage();
        events.push(format!("data: {last}"));
    }
    events.push("data: [DONE]".to_owned());
    let body = events.join("\n\n") + "\n\n";
    (StatusCode::OK, [("content-type", "text/event-stream")], body).into_response()
}

async fn key() -> Json<Value> {
    Json(json!({"data": {
        "label": "sk-or-v1-abc...xyz", "limit": null, "usage": 0.5, "usage_daily": 0.1, "usage_weekly": 0.2,
        "usage_monthly": 0.5, "is_free_tier": false, "is_provisioning_key": false, "limit_remaining": null,
        "limit_reset": null, "include_byok_in_limit": false, "rate_limit": {"requests": -1, "interval": "10s"},
    }}))
}

async fn generation(Query(q): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    Json(json!({"data": {
        "id": q.get("id").cloned().unwrap_or_default(), "upstream_id": "chatcmpl-upstream", "total_cost": 0.000006,
        "cache_discount": null, "upstream_inference_cost": null, "created_at": "2026-12-01T10:00:00.000Z",
        "model": MODEL, "app_id": null, "streamed": false, "cancelled": false, "provider_name": "OpenAI",
        "latency": 420, "moderation_latency": null, "generation_time": 380, "finish_reason": "stop",
        "native_finish_reason": "stop", "tokens_prompt": 12, "tokens_completion": 7, "native_tokens_prompt": 12,
        "native_tokens_completion": 7, "native_tokens_reasoning": 0, "num_media_prompt": null,
        "num_media_completion": null, "num_search_results": null, "origin": "https://myapp.example",
        "usage": 0.000006, "is_byok": false,
    }}))
}

async fn models() -> Json<Value> {
    Json(json!({"data": [{
        "id": MODEL, "canonical_slug": "openai/gpt-4o-mini-2024-07-18", "hugging_face_id": null,
        "name": "OpenAI: GPT-4o-mini", "created": 1_721_260_800,
        "description": "GPT-4o mini is OpenAI's newest model after GPT-4 Omni.",
        "context_length": 128_000,
        "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image", "file"],
                         "output_modalities": ["text"], "tokenizer": "GPT", "instruct_type": null},
        "pricing": {"prompt": "0.00000015", "completion": "0.0000006", "request": "0", "image": "0.000217",
                    "web_search": "0.01", "internal_reasoning": "0", "input_cache_read": "0.000000075"},
        "top_provider": {"context_length": 128_000, "max_completion_tokens": 16_384, "is_moderated": true},
        "per_request_limits": null,
        "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice", "response_format"],
        "default_parameters": {},
    }]}))
}
