//! The Anthropic Messages API as a surface clients call (`POST /v1/messages`): requests are
//! translated into the OpenAI chat shape the gateway runs on any route, and answers back into
//! Anthropic's message objects and SSE events. Invariant: what the Anthropic SDK receives has
//! every field its types require, whichever provider answered.
//!
//! Components: [`request`] (Messages request → chat request), [`response`] (completion →
//! message), [`stream`] (OpenAI SSE → Anthropic SSE, incrementally).

pub mod request;
pub mod response;
pub mod stream;

/// Anthropic's stop reason for an OpenAI finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage object for OpenAI usage (`prompt_tokens` includes cached tokens there).
pub fn usage(openai: &serde_json::Value) -> serde_json::Value {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let cached = n(&openai["prompt_tokens_details"]["cached_tokens"]);
    let written = n(&openai["prompt_tokens_details"]["cache_creation_tokens"]);
    serde_json::json!({
        "input_tokens": n(&openai["prompt_tokens"]).saturating_sub(cached).saturating_sub(written),
        "output_tokens": n(&openai["completion_tokens"]),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    })
}
