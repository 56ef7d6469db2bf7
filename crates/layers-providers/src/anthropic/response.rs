//! An Anthropic Messages response translated into an OpenAI chat completion.
//! Invariant: usage follows OpenAI's meaning — `prompt_tokens` counts every input token
//! (uncached, cache reads and cache writes), `cached_tokens` the cache reads.

use layers_domain::Usage;
use serde_json::{json, Map, Value};

use super::request::{Mode, JSON_TOOL};
use super::wire::{ContentBlock, Message, WireUsage};
use crate::error::ProviderError;
use crate::reply::envelope;
use crate::usage_json::usage_value;

/// Anthropic's usage object in OpenAI's terms.
pub(super) fn usage(u: &WireUsage) -> Usage {
    let n = |v: Option<u64>| v.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let (input, read, write) = (n(u.input_tokens), n(u.cache_read_input_tokens), n(u.cache_creation_input_tokens));
    Usage {
        prompt_tokens: input.saturating_add(read).saturating_add(write),
        completion_tokens: n(u.output_tokens),
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
        images: 0,
    }
}

/// Anthropic's stop reason as an OpenAI finish reason.
pub(super) fn finish_reason(stop: Option<&str>, mode: &Mode) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if !mode.json_tool => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

pub(super) fn completion(
    body: &[u8],
    request_id: &str,
    mode: &Mode,
) -> Result<(Map<String, Value>, Usage), ProviderError> {
    let msg: Message =
        serde_json::from_slice(body).map_err(|_| ProviderError::Protocol("response is not a message"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    // Signed thinking goes back to Anthropic in later turns (with tool use it must), so the
    // blocks ride along as `thinking_blocks`, as other gateways carry them.
    let mut thinking_blocks = Vec::new();
    for block in &msg.content {
        if let Some(b) = block.thinking_block() {
            thinking_blocks.push(b);
        }
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::Thinking { thinking, .. } => reasoning.push_str(thinking),
            ContentBlock::ToolUse { name, input, .. } if mode.json_tool && name == JSON_TOOL => {
                text.push_str(&input.to_string());
            }
            ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            ContentBlock::RedactedThinking { .. } | ContentBlock::Other => {}
        }
    }
    let usage = usage(&msg.usage);
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !thinking_blocks.is_empty() {
        message["thinking_blocks"] = json!(thinking_blocks);
    }
    let mut out = envelope(&format!("chatcmpl-{request_id}"), "chat.completion", &msg.model);
    out.insert(
        "choices".into(),
        json!([{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(msg.stop_reason.as_deref(), mode),
        }]),
    );
    out.insert("usage".into(), usage_value(&usage, None));
    Ok((out, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tools_thinking_and_cache_usage() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                {"type": "text", "text": "Checking the weather."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 20}
        });
        let (out, usage) = completion(body.to_string().as_bytes(), "req1", &Mode::default()).unwrap();
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking the weather.");
        assert_eq!(choice["message"]["reasoning_content"], "Let me look.");
        assert_eq!(choice["message"]["thinking_blocks"][0]["signature"], "sig");
        assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(choice["message"]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!((usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens), (115, 100, 20));
        assert_eq!(usage.cache_write_tokens, 5);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(out["object"], "chat.completion");
    }

    #[test]
    fn json_mode_answers_as_content() {
        let body = json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"a": 1}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}
        });
        let (out, _) = completion(body.to_string().as_bytes(), "r", &Mode { json_tool: true }).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], r#"{"a":1}"#);
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert!(completion(b"{}", "r", &Mode::default()).is_err());
    }
}
