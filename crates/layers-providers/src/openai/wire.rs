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

pub(super) fn outgoing_body(req: &ChatRequest, upstream_model: &str, stream: bool) -> serde_json::Result<Vec<u8>> {
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
        max_tokens: req.max_tokens,
        max_completion_tokens: req.max_completion_tokens,
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
        let body: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", true).unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.5);
        let plain: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", false).unwrap()).unwrap();
        assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none());
    }
}
