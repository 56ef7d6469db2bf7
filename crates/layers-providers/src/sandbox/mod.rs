//! The built-in `sandbox` provider: no network, deterministic answers with realistic SSE and
//! usage. Serves test keys and the embedded default. Invariant: the same request always gets
//! the same content and the same usage.

mod reply;
mod schema;

pub use self::reply::prompt_tokens;

use layers_domain::{tokens, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use self::reply::{Output, Reply};
use crate::adapter::ChatCall;
use crate::error::ProviderError;
use crate::reply::{ChunkStream, Completion, StreamEvent};
use crate::usage_json::usage_value;

#[derive(Debug, Default)]
pub struct SandboxAdapter;

impl SandboxAdapter {
    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        let reply = Reply::for_request(call.request)?;
        let text = reply.text();
        let message = match &reply.output {
            Output::Text => json!({"role": "assistant", "content": text, "refusal": null}),
            Output::ToolCall { id, name } => json!({
                "role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": text}}],
            }),
        };
        let choices: Vec<Value> = (0..reply.n)
            .map(|index| {
                json!({"index": index, "message": message, "logprobs": null, "finish_reason": reply.finish_reason})
            })
            .collect();
        let mut body = envelope(call, "chat.completion");
        body.insert("choices".into(), Value::Array(choices));
        body.insert("usage".into(), usage_value(&reply.usage, None));
        Ok(Completion { body, usage: Some(reply.usage) })
    }

    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        let reply = Reply::for_request(call.request)?;
        let base = envelope(call, "chat.completion.chunk");
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut c = base.clone();
            c.insert("choices".into(), choices);
            if let Some(u) = usage {
                c.insert("usage".into(), u);
            }
            Ok(StreamEvent::Chunk(c))
        };
        let delta = |index: u32, d: Value, finish: Value| json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": finish}]);
        let mut events = Vec::with_capacity((reply.pieces.len() + 2) * reply.n as usize + 2);
        for index in 0..reply.n {
            match &reply.output {
                Output::Text => {
                    events.push(chunk(delta(index, json!({"role": "assistant", "content": ""}), Value::Null), None));
                    for piece in &reply.pieces {
                        events.push(chunk(delta(index, json!({"content": piece}), Value::Null), None));
                    }
                }
                Output::ToolCall { id, name } => {
                    let opening = json!({"role": "assistant", "content": null, "tool_calls": [
                        {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
                    events.push(chunk(delta(index, opening, Value::Null), None));
                    for piece in &reply.pieces {
                        let more = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                        events.push(chunk(delta(index, more, Value::Null), None));
                    }
                }
            }
            events.push(chunk(delta(index, json!({}), json!(reply.finish_reason)), None));
        }
        events.push(chunk(json!([]), Some(usage_value(&reply.usage, None))));
        events.push(Ok(StreamEvent::Done));
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}

/// The embeddings options the sandbox honours.
#[derive(serde::Deserialize)]
struct EmbedOptions {
    #[serde(default)]
    dimensions: Option<u64>,
}

/// The image options the sandbox honours.
#[derive(serde::Deserialize)]
struct ImageOptions {
    #[serde(default)]
    response_format: Option<String>,
}

/// A 1×1 PNG: what the sandbox "generates".
const PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

impl SandboxAdapter {
    /// Deterministic unit vectors (8 dimensions, or `dimensions`) derived from each input.
    pub async fn embed(&self, call: &crate::media::EmbedCall<'_>) -> Result<crate::media::MediaReply, ProviderError> {
        let dims = EmbedOptions::deserialize(crate::translate::map_de(call.extra))
            .ok()
            .and_then(|o| o.dimensions)
            .unwrap_or(8)
            .clamp(1, 4096) as usize;
        let vectors: Vec<Vec<f32>> = call.inputs.iter().map(|text| vector(text, dims)).collect();
        let bytes: usize = call.inputs.iter().map(String::len).sum();
        let prompt = tokens::estimate_generated(bytes).max(call.inputs.len() as u32);
        let usage = Usage { prompt_tokens: prompt, ..Usage::default() };
        let body = crate::media::embedding_list(vectors, call.upstream_model, call.base64, Some(prompt));
        Ok(crate::media::MediaReply { body, usage: Some(usage) })
    }

    /// `n` tiny PNGs, as `b64_json` (or as `data:` URLs when `response_format` is `url`).
    pub async fn image(&self, call: &crate::media::ImageCall<'_>) -> Result<crate::media::MediaReply, ProviderError> {
        let as_url = ImageOptions::deserialize(crate::translate::map_de(call.extra))
            .is_ok_and(|o| o.response_format.as_deref() == Some("url"));
        let data: Vec<Value> = (0..call.n)
            .map(|_| {
                if as_url {
                    json!({"url": format!("data:image/png;base64,{PIXEL_PNG}"), "revised_prompt": call.prompt})
                } else {
                    json!({"b64_json": PIXEL_PNG, "revised_prompt": call.prompt})
                }
            })
            .collect();
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut body = Map::new();
        body.insert("created".into(), json!(created));
        body.insert("data".into(), Value::Array(data));
        Ok(crate::media::MediaReply { body, usage: Some(Usage { images: call.n, ..Usage::default() }) })
    }
}

/// A unit vector from FNV-1a hashes of the text: the same text always gives the same vector.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in text.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn envelope(call: &ChatCall<'_>, object: &str) -> Map<String, Value> {
    let mut m = crate::reply::envelope(&format!("chatcmpl-sandbox-{}", call.request_id), object, call.upstream_model);
    m.insert("system_fingerprint".into(), json!("layers-sandbox"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatRequest;
    use futures_util::StreamExt;
    use tokio::time::Instant;

    fn call_with(body: &str) -> ChatRequest {
        serde_json::from_str(body).unwrap()
    }

    fn call_of<'a>(req: &'a ChatRequest, request_id: &'a str) -> ChatCall<'a> {
        ChatCall { request: req, upstream_model: "echo", request_id, deadline: Instant::now(), model_output_cap: 100 }
    }

    #[tokio::test]
    async fn deterministic_and_streams_the_same_text() {
        let req = call_with(r#"{"model":"sandbox/echo","messages":[{"role":"user","content":"ping  pong"}]}"#);
        let call = call_of(&req, "r1");
        let a = SandboxAdapter.complete(&call).await.unwrap();
        let b = SandboxAdapter.complete(&call).await.unwrap();
        assert_eq!(a.body["choices"], b.body["choices"]);
        let text = a.body["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
        assert!(text.contains("You said: \"ping pong\""));
        let usage = a.usage.unwrap();
        assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 10);

        let mut s = SandboxAdapter.stream(&call).await.unwrap();
        let mut streamed = String::new();
        let mut stream_usage = None;
        let mut done = false;
        while let Some(ev) = s.next().await {
            match ev.unwrap() {
                StreamEvent::Chunk(c) => {
                    if let Some(t) = c["choices"].get(0).and_then(|ch| ch["delta"]["content"].as_str()) {
                        streamed.push_str(t);
                    }
                    if let Some(u) = c.get("usage") {
                        stream_usage = crate::usage_json::parse_usage(u);
                    }
                }
                StreamEvent::Usage(_) => {}
                StreamEvent::Done => done = true,
            }
        }
        assert!(done);
        assert_eq!(streamed, text);
        assert_eq!(stream_usage, Some(usage));
    }

    #[tokio::test]
    async fn honours_max_tokens() {
        let req = call_with(r#"{"model":"sandbox/echo","max_tokens":3,"messages":[{"role":"user","content":"x"}]}"#);
        let call = call_of(&req, "r");
        let c = SandboxAdapter.complete(&call).await.unwrap();
        assert_eq!(c.usage.unwrap().completion_tokens, 3);
        assert_eq!(c.body["choices"][0]["finish_reason"], "length");
    }

    #[tokio::test]
    async fn a_streamed_tool_call_is_the_completed_one_and_n_gives_n_choices() {
        let req = call_with(
            r#"{"model":"sandbox/echo","n":2,"messages":[{"role":"user","content":"weather in 'Paris'"}],
                "tools":[{"type":"function","function":{"name":"get_weather",
                  "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]}"#,
        );
        let call = call_of(&req, "r");
        let done = SandboxAdapter.complete(&call).await.unwrap();
        assert_eq!(done.body["choices"].as_array().unwrap().len(), 2);
        let call_json = &done.body["choices"][1]["message"]["tool_calls"][0];
        assert_eq!(call_json["function"]["arguments"], r#"{"city":"Paris"}"#);
        let mut s = SandboxAdapter.stream(&call).await.unwrap();
        let (mut args, mut id, mut finish) = (String::new(), None, None);
        while let Some(ev) = s.next().await {
            if let StreamEvent::Chunk(c) = ev.unwrap() {
                let Some(choice) = c["choices"].get(0).filter(|ch| ch["index"] == 0) else { continue };
                let tool = &choice["delta"]["tool_calls"][0];
                if let Some(i) = tool["id"].as_str() {
                    id = Some(i.to_owned());
                }
                args.push_str(tool["function"]["arguments"].as_str().unwrap_or_default());
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_owned());
                }
            }
        }
        assert_eq!(args, r#"{"city":"Paris"}"#);
        assert_eq!(id.as_deref(), call_json["id"].as_str());
        assert_eq!(finish.as_deref(), Some("tool_calls"));
    }
}
