//! The built-in `sandbox` provider: no network, deterministic answers with realistic SSE and
//! usage. Serves test keys and the embedded default. Invariant: the same request always gets
//! the same content and the same usage.

use layers_domain::{tokens, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::adapter::ChatCall;
use crate::chat::{ChatRequest, Role};
use crate::error::ProviderError;
use crate::reply::{ChunkStream, Completion, StreamEvent};
use crate::usage_json::usage_value;

/// Characters of the user's message echoed back.
const ECHO_CHARS: usize = 200;

#[derive(Debug, Default)]
pub struct SandboxAdapter;

/// The reply the sandbox gives to a request, split into token-sized pieces.
struct Reply {
    pieces: Vec<String>,
    finish_reason: &'static str,
    usage: Usage,
}

impl SandboxAdapter {
    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        let reply = Reply::for_request(call.request);
        let mut body = envelope(call, "chat.completion");
        body.insert(
            "choices".into(),
            json!([{
                "index": 0,
                "message": {"role": "assistant", "content": reply.pieces.concat(), "refusal": null},
                "logprobs": null,
                "finish_reason": reply.finish_reason,
            }]),
        );
        body.insert("usage".into(), usage_value(&reply.usage, None));
        Ok(Completion { body, usage: Some(reply.usage) })
    }

    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        let reply = Reply::for_request(call.request);
        let base = envelope(call, "chat.completion.chunk");
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut c = base.clone();
            c.insert("choices".into(), choices);
            if let Some(u) = usage {
                c.insert("usage".into(), u);
            }
            Ok(StreamEvent::Chunk(c))
        };
        let delta =
            |d: Value, finish: Value| json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]);
        let mut events = Vec::with_capacity(reply.pieces.len() + 4);
        events.push(chunk(delta(json!({"role": "assistant", "content": ""}), Value::Null), None));
        for piece in &reply.pieces {
            events.push(chunk(delta(json!({"content": piece}), Value::Null), None));
        }
        events.push(chunk(delta(json!({}), json!(reply.finish_reason)), None));
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

// === impl Reply ===

impl Reply {
    fn for_request(req: &ChatRequest) -> Reply {
        let said =
            req.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.joined_text()).unwrap_or_default();
        let echo: String = said.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(ECHO_CHARS).collect();
        let text = format!(
            "Hello from the Layers sandbox. You said: \"{echo}\". This answer is deterministic and no model was called."
        );
        let mut pieces = split_tokens(&text);
        let mut finish_reason = "stop";
        if let Some(max) = req.output_cap() {
            if pieces.len() > max as usize {
                pieces.truncate(max as usize);
                finish_reason = "length";
            }
        }
        let parts = req.prompt_parts();
        // The sandbox counts what a tokenizer would see of the messages' text, not the bound.
        let text: usize = req.messages.iter().map(|m| m.joined_text().len()).sum();
        let prompt = tokens::typical_prompt(&tokens::PromptParts { text_bytes: text as u64, tools: false, ..parts });
        let usage = Usage { prompt_tokens: prompt, completion_tokens: pieces.len() as u32, ..Usage::default() };
        Reply { pieces, finish_reason, usage }
    }
}

/// Splits text like a BPE tokenizer roughly does: a word with its leading space is one piece.
fn split_tokens(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_space = false;
    for c in text.chars() {
        let is_space = c.is_whitespace();
        if is_space && !prev_space && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
        current.push(c);
        prev_space = is_space;
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::time::Instant;

    fn call_with(body: &str) -> ChatRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn splits_like_words() {
        assert_eq!(split_tokens("Hello big  world"), vec!["Hello", " big", "  world"]);
    }

    #[tokio::test]
    async fn deterministic_and_streams_the_same_text() {
        let req = call_with(r#"{"model":"sandbox/echo","messages":[{"role":"user","content":"ping  pong"}]}"#);
        let call = ChatCall {
            request: &req,
            upstream_model: "echo",
            request_id: "r1",
            deadline: Instant::now(),
            model_output_cap: 100,
        };
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
        let call = ChatCall {
            request: &req,
            upstream_model: "echo",
            request_id: "r",
            deadline: Instant::now(),
            model_output_cap: 100,
        };
        let c = SandboxAdapter.complete(&call).await.unwrap();
        assert_eq!(c.usage.unwrap().completion_tokens, 3);
        assert_eq!(c.body["choices"][0]["finish_reason"], "length");
    }
}
