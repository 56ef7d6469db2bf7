//! Pieces of the OpenAI chat shape that every native translation reads the same way: refusals
//! naming the parameter, `data:` image URLs, tool definitions and the tool calls of assistant
//! messages. Invariant: a malformed piece is a 400 naming where it is, never a guess.

use serde_json::{json, Value};

use crate::chat::ChatMessage;
use crate::error::ProviderError;

/// A 400 naming the parameter the provider cannot honour.
pub fn unsupported(param: &str, message: &str) -> ProviderError {
    ProviderError::Unsupported { param: param.to_owned(), message: message.to_owned() }
}

/// The image URL of an `image_url` content part.
pub fn image_url<'a>(part: &'a serde_json::Map<String, Value>, param: &str) -> Result<&'a str, ProviderError> {
    part.get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported(param, "an `image_url` part needs `image_url.url`"))
}

/// A base64 `data:` URL split into media type and data; `None` when `url` is not a data URL.
pub fn data_url<'a>(url: &'a str, param: &str) -> Option<Result<(&'a str, &'a str), ProviderError>> {
    let rest = url.strip_prefix("data:")?;
    Some(
        rest.split_once(";base64,")
            .ok_or_else(|| unsupported(param, "a `data:` image URL must be base64 (`data:image/png;base64,…`)")),
    )
}

/// One function tool of the request.
pub struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    /// The JSON schema of its arguments (`{"type":"object"}` when none was given).
    pub parameters: Value,
}

/// The request's `tools`, all of which must be functions.
pub fn function_tools(value: &Value) -> Result<Vec<FunctionTool<'_>>, ProviderError> {
    let list = value.as_array().ok_or_else(|| unsupported("tools", "`tools` must be an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            if t["type"] != "function" {
                return Err(unsupported(&format!("tools[{i}].type"), "only `function` tools are supported"));
            }
            let f = &t["function"];
            let name = f["name"]
                .as_str()
                .ok_or_else(|| unsupported(&format!("tools[{i}].function.name"), "a tool needs a name"))?;
            let parameters =
                if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) };
            Ok(FunctionTool { name, description: f["description"].as_str(), parameters })
        })
        .collect()
}

/// One tool call an assistant message made, with its arguments parsed.
pub struct ToolCall<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub arguments: Value,
}

/// The `tool_calls` of an assistant message (`param` names the message).
pub fn tool_calls<'a>(m: &'a ChatMessage, param: &str) -> Result<Vec<ToolCall<'a>>, ProviderError> {
    let calls = match m.extra.get("tool_calls") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(unsupported(&format!("{param}.tool_calls"), "`tool_calls` must be an array")),
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let here = format!("{param}.tool_calls[{j}]");
            let id = call["id"].as_str().ok_or_else(|| unsupported(&here, "a tool call needs an `id`"))?;
            let name = call["function"]["name"]
                .as_str()
                .ok_or_else(|| unsupported(&here, "a tool call needs `function.name`"))?;
            let args = call["function"]["arguments"].as_str().unwrap_or("{}");
            let arguments: Value =
                if args.trim().is_empty() { json!({}) } else { serde_json::from_str(args).unwrap_or(Value::Null) };
            if !arguments.is_object() {
                return Err(unsupported(
                    &format!("{here}.function.arguments"),
                    "tool call arguments must be a JSON object",
                ));
            }
            Ok(ToolCall { id, name, arguments })
        })
        .collect()
}

/// Appends a turn's pieces to the conversation, merging them into the last turn when it has the
/// same role (Anthropic and Gemini both want alternating turns). `field` is where a turn keeps
/// its pieces (`content`, `parts`); empty pieces add nothing.
pub fn push_turn(turns: &mut Vec<Value>, role: &str, field: &str, pieces: Vec<Value>) {
    if pieces.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut().filter(|t| t["role"] == role) {
        if let Some(existing) = last[field].as_array_mut() {
            existing.extend(pieces);
            return;
        }
    }
    let mut turn = serde_json::Map::new();
    turn.insert("role".into(), json!(role));
    turn.insert(field.into(), Value::Array(pieces));
    turns.push(Value::Object(turn));
}

/// `stop` as a list of sequences.
pub fn stop_sequences(value: &Value) -> Result<Vec<Value>, ProviderError> {
    match value {
        Value::String(s) => Ok(vec![json!(s)]),
        Value::Array(a) if a.iter().all(Value::is_string) => Ok(a.clone()),
        _ => Err(unsupported("stop", "`stop` must be a string or an array of strings")),
    }
}

/// `reasoning_effort` as a thinking budget in tokens.
pub fn effort_budget(value: &Value) -> Result<u32, ProviderError> {
    match value.as_str() {
        Some("minimal" | "low") => Ok(1024),
        Some("medium") => Ok(4096),
        Some("high") => Ok(16384),
        _ => Err(unsupported("reasoning_effort", "`reasoning_effort` must be minimal, low, medium or high")),
    }
}

/// Fields of a per-provider option object (`anthropic`, `openai`, `google`) that the gateway
/// decides: the model (what is billed), the output cap (what the hold covers), the content
/// (what the limits checked), the streaming mode, and anything the provider bills beside
/// tokens. An option object may not set them.
const PROTECTED: [&str; 28] = [
    "model",
    "messages",
    "system",
    "contents",
    "systemInstruction",
    "max_tokens",
    "max_completion_tokens",
    "maxOutputTokens",
    "stream",
    "stream_options",
    "n",
    "candidateCount",
    "generationConfig.maxOutputTokens",
    "generationConfig.candidateCount",
    "generationConfig.thinkingConfig",
    "generationConfig.responseModalities",
    // What the provider bills beside tokens, which the hold must have counted: server tools
    // (web search, code execution), search options and tiers of service.
    "tools",
    "tool_choice",
    "toolConfig",
    "service_tier",
    "web_search_options",
    "search_context_size",
    "modalities",
    "audio",
    "prediction",
    // Output the hold cannot bound, and content of the operator's account.
    "thinkingConfig",
    "cachedContent",
    "file_id",
];

/// The option object `name` as a map, refusing fields the gateway decides.
pub fn option_object<'a>(name: &str, value: &'a Value) -> Result<&'a serde_json::Map<String, Value>, ProviderError> {
    let opts = value
        .as_object()
        .ok_or_else(|| unsupported(name, &format!("`{name}` must be an object of provider fields")))?;
    for (k, v) in opts {
        let nested = v.as_object().into_iter().flat_map(|o| o.keys().map(move |inner| format!("{k}.{inner}")));
        if let Some(field) = std::iter::once(k.clone()).chain(nested).find(|f| PROTECTED.contains(&f.as_str())) {
            return Err(unsupported(
                &format!("{name}.{field}"),
                &format!(
                    "`{field}` is set by the gateway from the request itself and cannot be overridden in `{name}`"
                ),
            ));
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_objects_cannot_override_what_is_billed_or_checked() {
        assert!(option_object("anthropic", &json!({"top_k": 5, "metadata": {"user_id": "u"}})).is_ok());
        for bad in [
            json!({"model": "claude-opus-4-1"}),
            json!({"max_tokens": 99999}),
            json!({"messages": []}),
            json!({"generationConfig": {"maxOutputTokens": 9}}),
            json!({"stream": false}),
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            json!({"tool_choice": "auto"}),
            json!({"service_tier": "priority"}),
            json!({"web_search_options": {}}),
            json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": 90000}}}),
            json!({"cachedContent": "cachedContents/abc"}),
        ] {
            match option_object("x", &bad) {
                Err(ProviderError::Unsupported { param, .. }) => assert!(param.starts_with("x."), "{param}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(option_object("x", &json!(3)).is_err());
    }
}
