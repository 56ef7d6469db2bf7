//! Gemini `GenerateContentResponse`s translated into OpenAI completions and chunks.
//! Invariant: usage follows OpenAI's meaning — thoughts are output tokens (Gemini bills them
//! so) and are also reported as `reasoning_tokens`; cached content tokens are `cached_tokens`.

use layers_domain::Usage;
use serde_json::{json, Value};

use super::wire::{GenerateContentResponse, UsageMetadata};

/// Gemini's usage metadata in OpenAI's terms.
pub(super) fn usage(meta: &UsageMetadata) -> Usage {
    let n = |v: Option<u64>| v.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let thoughts = n(meta.thoughts_token_count);
    Usage {
        prompt_tokens: n(meta.prompt_token_count).saturating_add(n(meta.tool_use_prompt_token_count)),
        completion_tokens: n(meta.candidates_token_count).saturating_add(thoughts),
        cached_tokens: n(meta.cached_content_token_count),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
        images: 0,
    }
}

/// Gemini's finish reason for a function call it could not form: no answer at all, so it is
/// an upstream failure (another route may do better), never an empty 200.
pub(super) const MALFORMED_CALL: &str = "MALFORMED_FUNCTION_CALL";

pub(super) fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// What one response (or streamed chunk) carries for the first candidate.
#[derive(Default)]
pub(super) struct Parts {
    pub text: String,
    pub reasoning: String,
    /// `(name, arguments as JSON text, id when Gemini gave one)`.
    pub calls: Vec<(String, String, Option<String>)>,
    pub finish: Option<String>,
    /// The prompt itself was blocked (no candidate at all).
    pub blocked: bool,
}

pub(super) fn parts(resp: &GenerateContentResponse) -> Parts {
    let mut out = Parts::default();
    let Some(candidate) = resp.candidates.first() else {
        out.blocked = resp.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some());
        return out;
    };
    for part in candidate.content.iter().flat_map(|c| &c.parts) {
        if let Some(t) = &part.text {
            if part.thought == Some(true) {
                out.reasoning.push_str(t);
            } else {
                out.text.push_str(t);
            }
        } else if let Some(call) = &part.function_call {
            let args = match &call.args {
                Some(args @ Value::Object(_)) => args.to_string(),
                _ => "{}".to_owned(),
            };
            out.calls.push((call.name.clone(), args, call.id.clone()));
        }
    }
    out.finish = candidate.finish_reason.clone();
    out
}

/// An OpenAI tool call id for Gemini's `index`-th call of this request.
pub(super) fn call_id(request_id: &str, index: usize, given: Option<&str>) -> String {
    given.map_or_else(|| format!("call_{request_id}_{index}"), str::to_owned)
}

pub(super) fn message(p: &Parts, request_id: &str) -> Value {
    let calls: Vec<Value> = p
        .calls
        .iter()
        .enumerate()
        .map(|(i, (name, args, id))| {
            json!({"id": call_id(request_id, i, id.as_deref()), "type": "function",
                   "function": {"name": name, "arguments": args}})
        })
        .collect();
    let mut m = json!({
        "role": "assistant",
        "content": if p.text.is_empty() && !calls.is_empty() { Value::Null } else { json!(p.text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    if !p.reasoning.is_empty() {
        m["reasoning_content"] = json!(p.reasoning);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_thoughts_calls_and_usage() {
        let resp = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Thinking about it", "thought": true},
                {"text": "Answer."},
                {"functionCall": {"name": "lookup", "args": {"q": "x"}}}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 7,
                              "cachedContentTokenCount": 4, "totalTokenCount": 24},
            "modelVersion": "gemini-2.5-flash"
        });
        let resp: GenerateContentResponse = serde_json::from_value(resp).unwrap();
        let p = parts(&resp);
        assert_eq!((p.text.as_str(), p.reasoning.as_str()), ("Answer.", "Thinking about it"));
        assert_eq!(finish_reason(p.finish.as_deref().unwrap(), !p.calls.is_empty()), "tool_calls");
        let m = message(&p, "r1");
        assert_eq!(m["tool_calls"][0]["id"], "call_r1_0");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], r#"{"q":"x"}"#);
        let u = usage(&resp.usage_metadata.unwrap());
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cached_tokens), (12, 12, 7, 4));
        let blocked = parts(&serde_json::from_value(json!({"promptFeedback": {"blockReason": "SAFETY"}})).unwrap());
        assert!(blocked.blocked);
        assert_eq!(finish_reason("SAFETY", false), "content_filter");
        assert_eq!(finish_reason("MAX_TOKENS", false), "length");
    }
}
