//! A chat completion (as the gateway shaped it) translated into an Anthropic message.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{stop_reason, usage};
use crate::chat::answer::{AnswerMessage, Choice, Completion};

/// The message object for a completion body; `id` is derived from the request id.
pub fn to_message(completion: &Value, request_id: &str) -> Value {
    let completion = Completion::deserialize(completion).unwrap_or_default();
    let (msg, finish) = match completion.choices.into_iter().next() {
        Some(Choice { message, finish_reason }) => (message, finish_reason),
        None => (AnswerMessage::default(), None),
    };
    let mut content = Vec::new();
    match msg.thinking_blocks {
        // Anthropic's own blocks, signatures included, so the client can send them back.
        Some(blocks) => content.extend(blocks.into_iter().map(|b| json!(b))),
        None => {
            if let Some(r) = msg.reasoning_content.filter(|r| !r.is_empty()) {
                content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
            }
        }
    }
    if let Some(t) = msg.content.filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg.tool_calls.into_iter().flatten() {
        let input = call
            .function
            .arguments
            .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
    }
    json!({
        "id": format!("msg_{request_id}"),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": stop_reason(finish.as_deref()),
        "stop_sequence": null,
        "usage": usage(completion.usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_thinking_tools_and_usage() {
        let m = to_message(
            &json!({"model": "google/gemini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "On it.", "reasoning_content": "hmm",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}}),
            "req_1",
        );
        assert_eq!(m["id"], "msg_req_1");
        assert_eq!(m["content"][0]["type"], "thinking");
        assert_eq!(m["content"][1], json!({"type": "text", "text": "On it."}));
        assert_eq!(m["content"][2], json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60, "cache_creation_input_tokens": 0})
        );
    }
}
