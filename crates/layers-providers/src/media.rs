//! Embeddings and image generation, in OpenAI's shapes, whatever the provider.
//! Invariant: what an adapter returns is the OpenAI response body plus the usage to bill
//! (`None` when the provider reports none and the caller must estimate).

use base64::Engine;
use layers_domain::Usage;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::error::ProviderError;
use crate::translate::unsupported;

/// One embeddings call to one route.
#[derive(Debug)]
pub struct EmbedCall<'a> {
    /// The inputs, each a string (token-array inputs are passed only to OpenAI-compatible
    /// upstreams, as `raw`).
    pub inputs: &'a [String],
    /// The client's `input` as sent.
    pub raw: &'a Value,
    pub upstream_model: &'a str,
    /// `dimensions`, `user` and other fields as the client sent them.
    pub extra: &'a Map<String, Value>,
    /// Return vectors as base64 of little-endian f32 (what the openai SDKs ask for by default).
    pub base64: bool,
    pub deadline: Instant,
}

/// One image generation call to one route.
#[derive(Debug)]
pub struct ImageCall<'a> {
    pub prompt: &'a str,
    pub n: u32,
    pub size: Option<&'a str>,
    pub upstream_model: &'a str,
    /// `quality`, `style`, `response_format`, `background`… as the client sent them.
    pub extra: &'a Map<String, Value>,
    pub request_id: &'a str,
    pub deadline: Instant,
}

/// An OpenAI-shaped body and the usage to bill.
#[derive(Debug)]
pub struct MediaReply {
    pub body: Map<String, Value>,
    pub usage: Option<Usage>,
}

/// `{"object":"list","data":[{"object":"embedding","index":i,"embedding":…}],"model":…,"usage":…}`
/// for vectors computed or translated here.
pub fn embedding_list(
    vectors: Vec<Vec<f32>>,
    model: &str,
    base64: bool,
    prompt_tokens: Option<u32>,
) -> Map<String, Value> {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let mut body = Map::new();
    body.insert("object".into(), json!("list"));
    body.insert("data".into(), Value::Array(data));
    body.insert("model".into(), json!(model));
    let tokens = prompt_tokens.unwrap_or(0);
    body.insert("usage".into(), json!({"prompt_tokens": tokens, "total_tokens": tokens}));
    body
}

/// The refusal of a provider kind that does not offer `what`.
pub fn not_offered(provider: &str, what: &str) -> ProviderError {
    unsupported("model", &format!("{provider} does not offer {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let body = embedding_list(vec![vec![1.0, -2.5]], "m", true, Some(3));
        let b64 = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
        assert_eq!(body["usage"]["prompt_tokens"], 3);
        let floats = embedding_list(vec![vec![0.5]], "m", false, None);
        assert_eq!(floats["data"][0]["embedding"], json!([0.5]));
    }
}
