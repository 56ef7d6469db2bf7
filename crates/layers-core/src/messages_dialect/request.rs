//! An Anthropic Messages request translated into the OpenAI chat shape.
//! Invariant: every field either maps to its chat equivalent or is refused with a 400 naming
//! it (as `messages[2].content[0]` or `tools[1]`), so no instruction is silently lost.

use serde_json::{json, Map, Value};

use layers_providers::ChatRequest;

/// A request that cannot be translated: the parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub param: String,
    pub message: String,
}

fn invalid(param: &str, message: &str) -> Invalid {
    Invalid { param: param.to_owned(), message: message.to_owned() }
}

/// Translates the body (the `anthropic-beta` header is the caller's to carry over).
pub fn to_chat(body: &Value) -> Result<ChatRequest, Invalid> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "the body must be a JSON object"))?;
    let model = obj.get("model").and_then(Value::as_str).ok_or_else(|| invalid("model", "`model` is required"))?;
    let max_tokens = obj
        .get("max_tokens")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens", "`max_tokens` is required and must be a positive integer"))?;
    let mut cache = false;
    let mut messages = Vec::new();
    if let Some(system) = system_message(obj.get("system"), &mut cache)? {
        messages.push(system);
    }
    let input =
        obj.get("messages").and_then(Value::as_array).ok_or_else(|| invalid("messages", "`messages` is required"))?;
    for (i, m) in input.iter().enumerate() {
        translate_message(m, i, &mut messages, &mut cache)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    let mut anthropic = Map::new();
    let mut parallel = None;
    for (key, value) in obj {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" | "max_tokens" | "messages" | "system" => {}
            "stream" => {
                out.insert("stream".into(), value.clone());
                if value.as_bool() == Some(true) {
                    // The Messages stream always ends with usage.
                    out.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
            "temperature" | "top_p" | "thinking" => {
                out.insert(key.clone(), value.clone());
            }
            "stop_sequences" => {
                out.insert("stop".into(), value.clone());
            }
            "top_k" | "service_tier" => {
                anthropic.insert(key.clone(), value.clone());
            }
            "metadata" => {
                if let Some(user) = value.get("user_id").filter(|u| !u.is_null()) {
                    out.insert("user".into(), user.clone());
                }
            }
            "tools" => {
                out.insert("tools".into(), tools(value, &mut cache)?);
            }
            "tool_choice" => {
                out.insert("tool_choice".into(), tool_choice(value)?);
                if value["disable_parallel_tool_use"].as_bool() == Some(true) {
                    parallel = Some(false);
                }
            }
            other => return Err(invalid(other, &format!("`{other}` is not supported by this gateway"))),
        }
    }
    if let Some(p) = parallel {
        out.insert("parallel_tool_calls".into(), json!(p));
    }
    if cache {
        out.insert("cache".into(), json!(true));
    }
    if !anthropic.is_empty() {
        out.insert("anthropic".into(), Value::Object(anthropic));
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| invalid("messages", &format!("invalid request: {e}")))
}

/// `system` as the chat shape's first message (text blocks only).
fn system_message(system: Option<&Value>, cache: &mut bool) -> Result<Option<Value>, Invalid> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!({"role": "system", "content": s}))),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                if b["type"] != "text" {
                    return Err(invalid(&format!("system[{i}]"), "system blocks must be text"));
                }
                *cache |= b.get("cache_control").is_some();
                parts.push(json!({"type": "text", "text": b["text"].as_str().unwrap_or_default()}));
            }
            Ok(Some(json!({"role": "system", "content": parts})))
        }
        Some(_) => Err(invalid("system", "`system` must be a string or an array of text blocks")),
    }
}

/// Custom tools as chat functions; server tools are refused.
fn tools(value: &Value, cache: &mut bool) -> Result<Value, Invalid> {
    let tools = value.as_array().ok_or_else(|| invalid("tools", "`tools` must be an array"))?;
    let mut list = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").is_some_and(|k| k != "custom") {
            return Err(invalid(&format!("tools[{i}]"), "server tools are not supported through this gateway"));
        }
        *cache |= t.get("cache_control").is_some();
        let name = t["name"].as_str().ok_or_else(|| invalid(&format!("tools[{i}].name"), "a tool needs a name"))?;
        let parameters = t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}));
        let mut f = json!({"name": name, "parameters": parameters});
        if let Some(d) = t["description"].as_str() {
            f["description"] = json!(d);
        }
        list.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(list))
}

/// `tool_choice` in the chat shape.
fn tool_choice(value: &Value) -> Result<Value, Invalid> {
    Ok(match value["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name =
                value["name"].as_str().ok_or_else(|| invalid("tool_choice.name", "`tool_choice.name` is required"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(invalid("tool_choice.type", "must be auto, any, tool or none")),
    })
}

fn translate_message(m: &Value, i: usize, out: &mut Vec<Value>, cache: &mut bool) -> Result<(), Invalid> {
    let here = format!("messages[{i}]");
    let role = m["role"].as_str().ok_or_else(|| invalid(&format!("{here}.role"), "`role` is required"))?;
    if role != "user" && role != "assistant" {
        return Err(invalid(&format!("{here}.role"), "`role` must be user or assistant"));
    }
    let blocks = match &m["content"] {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Err(invalid(&format!("{here}.content"), "`content` must be a string or an array of blocks")),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut thinking = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{here}.content[{j}]");
        *cache |= b.get("cache_control").is_some();
        match (role, b["type"].as_str()) {
            (_, Some("text")) => parts.push(json!({"type": "text", "text": b["text"].as_str().unwrap_or_default()})),
            ("user", Some("image")) => parts.push(image_part(&b["source"], &at)?),
            ("assistant", Some("tool_use")) => {
                let id =
                    b["id"].as_str().ok_or_else(|| invalid(&format!("{at}.id"), "a tool_use block needs an id"))?;
                let name = b["name"]
                    .as_str()
                    .ok_or_else(|| invalid(&format!("{at}.name"), "a tool_use block needs a name"))?;
                let input = if b["input"].is_object() { b["input"].to_string() } else { "{}".to_owned() };
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input}}));
            }
            // Kept, signatures included, for Anthropic routes (others ignore them).
            ("assistant", Some("thinking" | "redacted_thinking")) => thinking.push(b.clone()),
            ("user", Some("tool_result")) => {
                let id = b["tool_use_id"]
                    .as_str()
                    .ok_or_else(|| invalid(&format!("{at}.tool_use_id"), "a tool_result needs tool_use_id"))?;
                let text = match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(inner) => {
                        inner.iter().filter_map(|x| x["text"].as_str()).collect::<Vec<_>>().join("\n")
                    }
                    _ => String::new(),
                };
                let text = if b["is_error"].as_bool() == Some(true) { format!("Error: {text}") } else { text };
                results.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            (_, other) => {
                return Err(invalid(
                    &at,
                    &format!("content blocks of type `{}` are not supported here", other.unwrap_or("?")),
                ))
            }
        }
    }
    // Tool results answer the previous assistant turn, so they come first.
    out.extend(results);
    if role == "assistant" {
        let mut msg =
            json!({"role": "assistant", "content": if parts.is_empty() { Value::Null } else { Value::Array(parts) }});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        if !thinking.is_empty() {
            msg["thinking_blocks"] = Value::Array(thinking);
        }
        out.push(msg);
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn image_part(source: &Value, at: &str) -> Result<Value, Invalid> {
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().ok_or_else(|| invalid(&format!("{at}.source.data"), "base64 data is required"))?
        ),
        Some("url") => {
            source["url"].as_str().ok_or_else(|| invalid(&format!("{at}.source.url"), "`url` is required"))?.to_owned()
        }
        _ => return Err(invalid(&format!("{at}.source.type"), "an image source must be base64 or url")),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_tools_becomes_a_chat_request() {
        let req = to_chat(&json!({
            "model": "anthropic/claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"], "top_k": 5, "metadata": {"user_id": "u1"},
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "text", "text": "And tomorrow?"}]}
            ]
        }))
        .unwrap();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["max_tokens"], 1024);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0], json!({"role": "system", "content": [{"type": "text", "text": "Be brief."}]}));
        assert_eq!(v["messages"][1]["content"][1]["image_url"]["url"], "data:image/png;base64,AAA");
        assert_eq!(v["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(v["messages"][2]["thinking_blocks"][0]["signature"], "s");
        assert_eq!(v["messages"][3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}));
        assert_eq!(v["messages"][4]["content"][0]["text"], "And tomorrow?");
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["anthropic"], json!({"top_k": 5}));
        assert_eq!(v["user"], "u1");
        assert_eq!(v["cache"], true);
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        let param = |v: Value| to_chat(&v).unwrap_err().param;
        assert_eq!(param(json!({"model": "m", "messages": []})), "max_tokens");
        assert_eq!(param(json!({"max_tokens": 5, "messages": []})), "model");
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})),
            "messages[0].role"
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]})
            ),
            "messages[0].content[0]"
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
            ),
            "tools[0]"
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [], "frequency_penalty": 1})),
            "frequency_penalty"
        );
    }
}
