//! The OpenAI chat request translated into an Anthropic Messages request.
//! Invariant: every field either has an Anthropic meaning it is mapped to, or is refused with a
//! 400 naming it — nothing the client asked for is dropped silently.

use serde_json::{json, Map, Value};

use crate::chat::{ChatMessage, ChatRequest, ContentPart, MessageContent, Role};
use crate::error::ProviderError;
use crate::translate::{self, unsupported};

/// The tool that carries `response_format` JSON answers (Anthropic has no JSON mode; a forced
/// tool call with the schema as its input is the documented way to get schema-valid JSON).
pub(super) const JSON_TOOL: &str = "json_response";

/// Fields of other providers' option objects: meant for another route, not refused here.
const OTHER_PROVIDERS: [&str; 2] = ["openai", "google"];

/// What the response translation needs to know about the request.
#[derive(Clone, Debug, Default)]
pub(super) struct Mode {
    /// The answer comes as a call of [`JSON_TOOL`], to be returned as message content.
    pub json_tool: bool,
}

/// Builds the Messages API body. `default_max` is the model's output cap, used when the client
/// set none (Anthropic requires `max_tokens`).
pub(super) fn build(
    req: &ChatRequest,
    upstream_model: &str,
    stream: bool,
    default_max: u32,
) -> Result<(Value, Mode), ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "Anthropic models return one choice; `n` must be 1"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(upstream_model));
    body.insert("max_tokens".into(), json!(req.output_cap().unwrap_or(default_max).max(1)));
    let (system, mut messages) = messages(&req.messages)?;
    let cache = truthy(req.extra.get("cache"));
    if let Some(system) = with_cache_marks(system, &mut messages, cache) {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    if stream {
        body.insert("stream".into(), json!(true));
    }
    let mut mode = Mode::default();
    let mut parallel_tools = None;
    let mut tool_choice = None;
    for (name, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "temperature" => {
                let t = value.as_f64().ok_or_else(|| unsupported("temperature", "`temperature` must be a number"))?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(unsupported("temperature", "Anthropic models accept a temperature between 0 and 1"));
                }
                body.insert("temperature".into(), value.clone());
            }
            "top_p" => {
                body.insert("top_p".into(), value.clone());
            }
            "stop" => {
                body.insert("stop_sequences".into(), Value::Array(translate::stop_sequences(value)?));
            }
            "tools" => {
                body.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => tool_choice = Some(value),
            "parallel_tool_calls" => parallel_tools = value.as_bool(),
            "response_format" => mode.json_tool = json_tool(value, &mut body)?,
            "thinking" => {
                body.insert("thinking".into(), value.clone());
            }
            "reasoning_effort" => {
                let budget = translate::effort_budget(value)?;
                body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
            }
            "user" => {
                body.insert("metadata".into(), json!({ "user_id": value }));
            }
            "cache" | "stream_options" => {}
            "anthropic" => {
                for (k, v) in translate::option_object("anthropic", value)? {
                    body.insert(k.clone(), v.clone());
                }
            }
            other if OTHER_PROVIDERS.contains(&other) => {}
            other => {
                return Err(unsupported(other, &format!("`{other}` is not supported by Anthropic models")));
            }
        }
    }
    let client_tools = req.extra.get("tools").is_some_and(|t| !t.is_null());
    if mode.json_tool && (client_tools || tool_choice.is_some()) {
        return Err(unsupported(
            "response_format",
            "`response_format` cannot be combined with `tools` on Anthropic models",
        ));
    }
    set_tool_choice(&mut body, tool_choice, parallel_tools)?;
    Ok((Value::Object(body), mode))
}

/// The system blocks (if any), with prompt caching marked on the last system block and the
/// last message's last block when the request asks for `cache`.
fn with_cache_marks(mut system: Vec<Value>, messages: &mut [Value], cache: bool) -> Option<Value> {
    if cache {
        if let Some(last) = messages.last_mut().and_then(|m| m["content"].as_array_mut()).and_then(|c| c.last_mut()) {
            mark_cached(Some(last));
        }
        mark_cached(system.last_mut());
    }
    (!system.is_empty()).then_some(Value::Array(system))
}

/// `tool_choice`, with `parallel_tool_calls: false` as Anthropic's `disable_parallel_tool_use`.
fn set_tool_choice(
    body: &mut Map<String, Value>,
    tool_choice: Option<&Value>,
    parallel_tools: Option<bool>,
) -> Result<(), ProviderError> {
    if let Some(choice) = tool_choice {
        let mut c = map_tool_choice(choice)?;
        if parallel_tools == Some(false) && c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
        body.insert("tool_choice".into(), c);
    } else if parallel_tools == Some(false) && body.contains_key("tools") {
        body.insert("tool_choice".into(), json!({"type": "auto", "disable_parallel_tool_use": true}));
    }
    Ok(())
}

fn truthy(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

fn mark_cached(block: Option<&mut Value>) {
    if let Some(Value::Object(b)) = block {
        b.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
}

/// System prompts (system and developer messages, in order) and the conversation, with
/// consecutive messages of one role merged (Anthropic alternates user and assistant).
fn messages(input: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, m) in input.iter().enumerate() {
        let param = |field: &str| format!("messages[{i}].{field}");
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                for block in content_blocks(m.content.as_ref(), &param("content"))? {
                    if block["type"] != "text" {
                        return Err(unsupported(&param("content"), "system messages may contain only text"));
                    }
                    system.push(block);
                }
                continue;
            }
            Role::User => ("user", content_blocks(m.content.as_ref(), &param("content"))?),
            Role::Assistant => ("assistant", assistant_blocks(m, &param)?),
            Role::Tool => ("user", vec![tool_result(m, &param)?]),
            Role::Function => {
                return Err(unsupported(&param("role"), "the legacy `function` role is not supported; use `tool`"))
            }
        };
        translate::push_turn(&mut out, role, "content", blocks);
    }
    Ok((system, out))
}

fn content_blocks(content: Option<&MessageContent>, param: &str) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![json!({"type": "text", "text": t})]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !(p.kind == "text" && p.text.as_deref().is_some_and(str::is_empty)))
            .map(|(j, p)| part_block(p, &format!("{param}[{j}]")))
            .collect(),
    }
}

fn part_block(part: &ContentPart, param: &str) -> Result<Value, ProviderError> {
    match part.kind.as_str() {
        "text" => Ok(json!({"type": "text", "text": part.text.as_deref().unwrap_or_default()})),
        "image_url" => {
            let url = translate::image_url(&part.extra, param)?;
            image_source(url, param).map(|source| json!({"type": "image", "source": source}))
        }
        other => {
            Err(unsupported(param, &format!("content parts of type `{other}` are not supported by Anthropic models")))
        }
    }
}

/// An image by URL, or a `data:` URL as base64 (the four media types Anthropic accepts).
fn image_source(url: &str, param: &str) -> Result<Value, ProviderError> {
    let Some(data_url) = translate::data_url(url, param) else {
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(json!({"type": "url", "url": url}));
        }
        return Err(unsupported(param, "an image must be an http(s) URL or a base64 `data:` URL"));
    };
    let (media_type, data) = data_url?;
    if !matches!(media_type, "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
        return Err(unsupported(param, "images must be JPEG, PNG, GIF or WebP"));
    }
    Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
}

fn assistant_blocks(m: &ChatMessage, param: &dyn Fn(&str) -> String) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = content_blocks(m.content.as_ref(), &param("content"))?;
    if blocks.iter().any(|b| b["type"] != "text") {
        return Err(unsupported(&param("content"), "assistant messages may contain only text and tool calls"));
    }
    // Signed thinking from an earlier answer goes first, as Anthropic requires.
    if let Some(thinking) = m.extra.get("thinking_blocks").and_then(Value::as_array) {
        let valid = thinking.iter().all(|b| matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking")));
        if !valid {
            return Err(unsupported(
                &param("thinking_blocks"),
                "thinking_blocks must be thinking or redacted_thinking blocks",
            ));
        }
        let signed = thinking
            .iter()
            .filter(|b| b["type"] == "redacted_thinking" || b["signature"].as_str().is_some_and(|s| !s.is_empty()));
        blocks.splice(0..0, signed.cloned());
    }
    let message = param("");
    for call in translate::tool_calls(m, message.trim_end_matches('.'))? {
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}));
    }
    Ok(blocks)
}

fn tool_result(m: &ChatMessage, param: &dyn Fn(&str) -> String) -> Result<Value, ProviderError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported(&param("tool_call_id"), "a tool message needs `tool_call_id`"))?;
    let content = content_blocks(m.content.as_ref(), &param("content"))?;
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn tools(value: &Value) -> Result<Value, ProviderError> {
    let tools = translate::function_tools(value)?
        .into_iter()
        .map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": t.parameters});
            if let Some(d) = t.description {
                tool["description"] = json!(d);
            }
            tool
        })
        .collect();
    Ok(Value::Array(tools))
}

fn map_tool_choice(choice: &Value) -> Result<Value, ProviderError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "none" => Ok(json!({"type": "none"})),
            "required" => Ok(json!({"type": "any"})),
            _ => Err(unsupported("tool_choice", "`tool_choice` must be auto, none, required or a function")),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| unsupported("tool_choice", "`tool_choice.function.name` is required"))?;
            Ok(json!({"type": "tool", "name": name}))
        }
        _ => Err(unsupported("tool_choice", "`tool_choice` must be auto, none, required or a function")),
    }
}

/// `response_format`: text needs nothing; JSON (object or schema) becomes a forced tool call.
fn json_tool(format: &Value, body: &mut Map<String, Value>) -> Result<bool, ProviderError> {
    let schema = match format["type"].as_str() {
        Some("text") => return Ok(false),
        Some("json_object") => json!({"type": "object"}),
        Some("json_schema") => {
            let schema = &format["json_schema"]["schema"];
            if !schema.is_object() {
                return Err(unsupported("response_format.json_schema.schema", "a JSON schema object is required"));
            }
            schema.clone()
        }
        _ => {
            return Err(unsupported(
                "response_format",
                "`response_format.type` must be text, json_object or json_schema",
            ))
        }
    };
    let description = format["json_schema"]["description"].as_str().unwrap_or("Respond with the answer as JSON.");
    body.insert("tools".into(), json!([{"name": JSON_TOOL, "description": description, "input_schema": schema}]));
    body.insert("tool_choice".into(), json!({"type": "tool", "name": JSON_TOOL}));
    Ok(true)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
