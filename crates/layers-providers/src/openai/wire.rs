//! The request body sent to an OpenAI-compatible upstream: the client's request with the
//! upstream model id and, when streaming, `stream_options.include_usage = true`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::chat::{ChatMessage, ChatRequest, StreamOptions};

#[derive(Serialize)]
struct Outgoing<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// The request body. A cap the gateway set goes out as `max_completion_tokens` to OpenAI itself
/// (its reasoning models refuse `max_tokens`) and as `max_tokens` elsewhere (what every
/// OpenAI-compatible server understands).
pub(super) fn outgoing_body(
    req: &ChatRequest,
    upstream_model: &str,
    stream: bool,
    prefer_completion_tokens: bool,
) -> serde_json::Result<Vec<u8>> {
    let (mut max_tokens, mut max_completion_tokens) = (req.max_tokens, req.max_completion_tokens);
    if let Some(cap) = req.gateway_output_cap.filter(|_| max_tokens.is_none() && max_completion_tokens.is_none()) {
        if prefer_completion_tokens {
            max_completion_tokens = Some(cap);
        } else {
            max_tokens = Some(cap);
        }
    }
    let stream_options = if stream {
        let mut opts = req.stream_options.clone().unwrap_or_default();
        opts.include_usage = Some(true);
        Some(opts)
    } else {
        None
    };
    serde_json::to_vec(&Outgoing {
        model: upstream_model,
        messages: &req.messages,
        stream: stream.then_some(true),
        stream_options,
        max_tokens,
        max_completion_tokens,
        n: req.n,
        extra: &req.extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_model_and_asks_for_usage() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", true, false).unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.5);
        let plain: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", false, false).unwrap()).unwrap();
        assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none());
        assert!(plain.get("max_tokens").is_none());
    }

    #[test]
    fn a_gateway_cap_uses_the_upstreams_parameter() {
        let mut req: ChatRequest =
            serde_json::from_str(r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        req.lower_output_cap(100);
        let other: Value = serde_json::from_slice(&outgoing_body(&req, "m", false, false).unwrap()).unwrap();
        assert_eq!((other["max_tokens"].as_u64(), other.get("max_completion_tokens")), (Some(100), None));
        let openai: Value = serde_json::from_slice(&outgoing_body(&req, "m", false, true).unwrap()).unwrap();
        assert_eq!((openai.get("max_tokens"), openai["max_completion_tokens"].as_u64()), (None, Some(100)));
        let mut explicit: ChatRequest =
            serde_json::from_str(r#"{"model":"a/b","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap();
        explicit.lower_output_cap(200);
        let v: Value = serde_json::from_slice(&outgoing_body(&explicit, "m", false, true).unwrap()).unwrap();
        assert_eq!(v["max_tokens"], 200, "the client's own field is lowered");
    }
}
