//! An Anthropic Messages request ([`inbound`](super::inbound)) translated into the OpenAI chat
//! shape. Invariant: every field either maps to its chat equivalent or is refused with a 400
//! naming it (as `messages[2].content[0]` or `tools[1]`), so no instruction is silently lost.

use serde_json::{json, Map, Value};

use layers_providers::chat::{ChatMessage, ContentPart, MessageContent, Role};
use layers_providers::{ChatRequest, ProviderError};

use super::inbound::{self, BlockKind, ChoiceKind, ImageSource, MessagesRequest, ResultBlock, SystemBlock, TextOr};

/// A request that cannot be translated: the parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub param: String,
    pub message: String,
}

fn invalid(param: &str, message: &str) -> Invalid {
    Invalid { param: param.to_owned(), message: message.to_owned() }
}

/// Fields Anthropic accepts that only change how Anthropic runs the request (not what any
/// other provider can answer): dropped on other routes.
const ANTHROPIC_ONLY_HARMLESS: [&str; 1] = ["context_management"];

/// Anthropic's fields that reach Anthropic unchanged (the hold bounds what they can cost).
/// Others are refused by name: fields that change the price (`speed`, `inference_geo`,
/// `container`'s hours) cannot be honoured within a hold, and an unknown field may be one.
const ANTHROPIC_PASSTHROUGH: [&str; 1] = ["mcp_servers"];

use crate::chat::preferences::OPENROUTER_FIELDS;

/// Translates the body (the `anthropic-beta` header is the caller's to carry over).
/// `anthropic_route`: every route of the model is Anthropic's, so what Anthropic accepts and the
/// chat shape has no field for goes to it unchanged (in the `anthropic` option object); on other
/// routes such a field is translated where it has a meaning there, dropped where it changes
/// nothing another provider answers, and otherwise refused with a 400 naming it.
pub fn to_chat(body: &Value, anthropic_route: bool) -> Result<ChatRequest, Invalid> {
    if !body.is_object() {
        return Err(invalid("body", "the body must be a JSON object"));
    }
    let req: MessagesRequest = layers_providers::translate::field(body, "").map_err(|e| match e {
        ProviderError::Unsupported { param, message } => Invalid { param, message },
        _ => invalid("body", "the body is not a Messages request"),
    })?;
    let mut anthropic = Map::new();
    let mut openrouter = Map::new();
    for (name, value) in req.other.iter().filter(|(_, v)| !v.is_null()) {
        if OPENROUTER_FIELDS.contains(&name.as_str()) {
            // Read by the chat pipeline (fallbacks, route preferences), never sent upstream.
            openrouter.insert(name.clone(), value.clone());
        } else if !ANTHROPIC_PASSTHROUGH.contains(&name.as_str()) {
            return Err(invalid(
                name,
                &format!(
                    "`{name}` is not offered here: it is unknown, or changes what a request costs beyond its hold"
                ),
            ));
        } else if anthropic_route {
            anthropic.insert(name.clone(), value.clone());
        } else {
            return Err(invalid(name, &format!("`{name}` is only honoured on Anthropic models")));
        }
    }
    if req.max_tokens == 0 {
        return Err(invalid("max_tokens", "`max_tokens` must be a positive integer"));
    }
    let mut cache = false;
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(system_message(system, &mut cache));
    }
    for (i, m) in req.messages.iter().enumerate() {
        translate_message(m, i, &mut messages, &mut cache)?;
    }
    let mut extra = Map::new();
    let stream = req.stream.unwrap_or(false);
    let mut put = |key: &str, value: Value| {
        extra.insert(key.to_owned(), value);
    };
    if let Some(t) = req.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = req.top_p {
        put("top_p", json!(p));
    }
    let effort = req.output_config.as_ref().and_then(|c| c.effort.clone());
    match req.thinking.filter(|t| !t.is_null()) {
        // Adaptive thinking (the model decides how much): Anthropic's own; elsewhere the
        // reasoning effort the request asks for (`output_config.effort`, else medium).
        Some(t) if t.get("type").and_then(Value::as_str) == Some("adaptive") => {
            if anthropic_route {
                anthropic.insert("thinking".to_owned(), t);
            } else {
                put("reasoning_effort", json!(reasoning_effort(effort.as_deref())));
            }
        }
        Some(t) if t.get("type").and_then(Value::as_str) == Some("disabled") && !anthropic_route => {}
        Some(t) => put("thinking", t),
        None => {}
    }
    let mut format = req.output_format;
    if let Some(config) = req.output_config {
        if anthropic_route {
            let mut m = config.other;
            if let Some(e) = config.effort {
                m.insert("effort".to_owned(), json!(e));
            }
            if let Some(f) = config.format {
                m.insert("format".to_owned(), serde_json::to_value(f).unwrap_or_default());
            }
            anthropic.insert("output_config".to_owned(), Value::Object(m));
        } else if let Some((name, _)) = config.other.iter().find(|(_, v)| !v.is_null()) {
            let field = format!("output_config.{name}");
            return Err(invalid(&field, &format!("`{field}` is only honoured on Anthropic models")));
        } else {
            if config.effort.is_some() {
                // How hard the model works: a reasoning effort elsewhere.
                put("reasoning_effort", json!(reasoning_effort(config.effort.as_deref())));
            }
            format = config.format.or(format);
        }
    }
    if let Some(super::inbound::OutputFormat::JsonSchema { schema }) = format {
        if anthropic_route {
            anthropic.insert("output_format".to_owned(), json!({"type": "json_schema", "schema": schema}));
        } else {
            put(
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
            );
        }
    }
    if let Some(cm) = req.context_management.filter(|v| !v.is_null()) {
        if anthropic_route {
            anthropic.insert("context_management".to_owned(), cm);
        }
        debug_assert!(ANTHROPIC_ONLY_HARMLESS.contains(&"context_management"));
    }
    if let Some(stop) = req.stop_sequences {
        put("stop", json!(stop));
    }
    if let Some(user) = req.metadata.and_then(|m| m.user_id) {
        put("user", json!(user));
    }
    if let Some(tools) = &req.tools {
        put("tools", self::tools(tools, &mut cache)?);
    }
    if let Some(choice) = &req.tool_choice {
        put("tool_choice", tool_choice(&choice.kind));
        if choice.disable_parallel_tool_use == Some(true) {
            put("parallel_tool_calls", json!(false));
        }
    }
    if cache {
        put("cache", json!(true));
    }
    for (name, value) in openrouter {
        put(&name, value);
    }
    if let Some(k) = req.top_k {
        anthropic.insert("top_k".to_owned(), json!(k));
    }
    if let Some(tier) = req.service_tier {
        anthropic.insert("service_tier".to_owned(), json!(tier));
    }
    if !anthropic.is_empty() {
        put("anthropic", Value::Object(anthropic));
    }
    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: req.stream,
        // The Messages stream always ends with usage.
        stream_options: stream
            .then(|| layers_providers::chat::StreamOptions { include_usage: Some(true), extra: Map::new() }),
        max_tokens: Some(req.max_tokens),
        max_completion_tokens: None,
        n: None,
        extra,
        gateway_output_cap: None,
        anthropic_beta: None,
    })
}

/// Anthropic's `effort` as a chat `reasoning_effort` (`max` is the most there is: high).
fn reasoning_effort(effort: Option<&str>) -> &'static str {
    match effort {
        Some("low") => "low",
        Some("high" | "max") => "high",
        _ => "medium",
    }
}

fn message(role: Role, content: Option<MessageContent>, extra: Map<String, Value>) -> ChatMessage {
    ChatMessage { role, content, extra }
}

fn text_part(text: String) -> ContentPart {
    ContentPart { kind: "text".to_owned(), text: Some(text), extra: Map::new() }
}

/// `system` as the chat shape's first message (text blocks only).
fn system_message(system: &TextOr<SystemBlock>, cache: &mut bool) -> ChatMessage {
    let content = match system {
        TextOr::Text(s) => MessageContent::Text(s.clone()),
        TextOr::Blocks(blocks) => MessageContent::Parts(
            blocks
                .iter()
                .map(|SystemBlock::Text { text, cache_control }| {
                    *cache |= cache_control.is_some();
                    text_part(text.clone())
                })
                .collect(),
        ),
    };
    message(Role::System, Some(content), Map::new())
}

/// Custom tools as chat functions; server tools are refused.
fn tools(tools: &[inbound::Tool], cache: &mut bool) -> Result<Value, Invalid> {
    let mut list = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t.kind.as_deref().is_some_and(|k| k != "custom") {
            return Err(invalid(&format!("tools[{i}]"), "server tools are not supported through this gateway"));
        }
        *cache |= t.cache_control.is_some();
        let name = t.name.as_deref().ok_or_else(|| invalid(&format!("tools[{i}].name"), "a tool needs a name"))?;
        let parameters = t.input_schema.clone().unwrap_or(json!({"type": "object"}));
        let mut f = json!({"name": name, "parameters": parameters});
        if let Some(d) = &t.description {
            f["description"] = json!(d);
        }
        list.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(list))
}

/// `tool_choice` in the chat shape.
fn tool_choice(kind: &ChoiceKind) -> Value {
    match kind {
        ChoiceKind::Auto => json!("auto"),
        ChoiceKind::Any => json!("required"),
        ChoiceKind::None => json!("none"),
        ChoiceKind::Tool { name } => json!({"type": "function", "function": {"name": name}}),
    }
}

/// What one Messages turn becomes: tool results (as `tool` messages), then the turn itself.
#[derive(Default)]
struct Turn {
    parts: Vec<ContentPart>,
    calls: Vec<Value>,
    results: Vec<ChatMessage>,
    thinking: Vec<Value>,
}

fn translate_message(
    m: &inbound::Message,
    i: usize,
    out: &mut Vec<ChatMessage>,
    cache: &mut bool,
) -> Result<(), Invalid> {
    let role = match m.role {
        inbound::Role::User => Role::User,
        inbound::Role::Assistant => Role::Assistant,
    };
    let blocks = match &m.content {
        TextOr::Text(s) => {
            out.push(message(role, Some(MessageContent::Text(s.clone())), Map::new()));
            return Ok(());
        }
        TextOr::Blocks(b) => b,
    };
    let mut turn = Turn::default();
    for (j, b) in blocks.iter().enumerate() {
        *cache |= b.cache_control.is_some();
        add_block(&mut turn, role, &b.kind, &format!("messages[{i}].content[{j}]"))?;
    }
    // Tool results answer the previous assistant turn, so they come first.
    out.extend(turn.results);
    if role == Role::Assistant {
        let content = (!turn.parts.is_empty()).then_some(MessageContent::Parts(turn.parts));
        let mut extra = Map::new();
        if !turn.calls.is_empty() {
            extra.insert("tool_calls".to_owned(), Value::Array(turn.calls));
        }
        if !turn.thinking.is_empty() {
            extra.insert("thinking_blocks".to_owned(), Value::Array(turn.thinking));
        }
        out.push(message(Role::Assistant, content, extra));
    } else if !turn.parts.is_empty() {
        out.push(message(Role::User, Some(MessageContent::Parts(turn.parts)), Map::new()));
    }
    Ok(())
}

fn add_block(turn: &mut Turn, role: Role, block: &BlockKind, at: &str) -> Result<(), Invalid> {
    match (role, block) {
        (_, BlockKind::Text { text }) => turn.parts.push(text_part(text.clone())),
        (Role::User, BlockKind::Image { source }) => turn.parts.push(image_part(source)),
        (Role::Assistant, BlockKind::ToolUse { id, name, input }) => {
            let arguments = if input.is_object() { input.to_string() } else { "{}".to_owned() };
            turn.calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}));
        }
        // Kept, signatures included, for Anthropic routes (others ignore them).
        (Role::Assistant, BlockKind::Thinking { thinking, signature }) => {
            turn.thinking.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
        }
        (Role::Assistant, BlockKind::RedactedThinking { data }) => {
            turn.thinking.push(json!({"type": "redacted_thinking", "data": data}));
        }
        (Role::User, BlockKind::Document { source }) => turn.parts.push(document_part(source, at)?),
        (Role::User, BlockKind::ToolResult { tool_use_id, content, is_error }) => {
            let text = match content {
                Some(TextOr::Text(s)) => s.clone(),
                Some(TextOr::Blocks(inner)) => {
                    let mut texts = Vec::new();
                    for (k, block) in inner.iter().enumerate() {
                        match block {
                            ResultBlock::Text { text } => texts.push(text.as_str()),
                            // What the tool returned besides text goes with the user's turn
                            // that carries the result (the chat shape has no images in tool
                            // messages).
                            ResultBlock::Image { source } => turn.parts.push(image_part(source)),
                            ResultBlock::Document { source } => {
                                turn.parts.push(document_part(source, &format!("{at}.content[{k}]"))?)
                            }
                        }
                    }
                    texts.join("\n")
                }
                None => String::new(),
            };
            let text = if *is_error == Some(true) { format!("Error: {text}") } else { text };
            let mut extra = Map::new();
            extra.insert("tool_call_id".to_owned(), json!(tool_use_id));
            turn.results.push(message(Role::Tool, Some(MessageContent::Text(text)), extra));
        }
        (_, other) => {
            let turn = if role == Role::User { "user" } else { "assistant" };
            return Err(invalid(at, &format!("{} blocks are not accepted in {turn} turns", other.name())));
        }
    }
    Ok(())
}

/// A document as the chat shape carries it: a PDF as a `file` part, plain text as text.
fn document_part(source: &super::inbound::DocumentSource, at: &str) -> Result<ContentPart, Invalid> {
    use super::inbound::DocumentSource;
    match source {
        DocumentSource::Base64 { media_type, data } => {
            let media = media_type.as_deref().unwrap_or("application/pdf");
            let mut extra = Map::new();
            extra.insert("file".to_owned(), json!({"file_data": format!("data:{media};base64,{data}")}));
            Ok(ContentPart { kind: "file".to_owned(), text: None, extra })
        }
        DocumentSource::Text { data } => Ok(text_part(data.clone())),
        _ => Err(invalid(&format!("{at}.source"), "documents are sent inline (base64 or text)")),
    }
}

fn image_part(source: &ImageSource) -> ContentPart {
    let url = match source {
        ImageSource::Base64 { media_type, data } => {
            format!("data:{};base64,{data}", media_type.as_deref().unwrap_or("image/png"))
        }
        ImageSource::Url { url } => url.clone(),
    };
    let mut extra = Map::new();
    extra.insert("image_url".to_owned(), json!({ "url": url }));
    ContentPart { kind: "image_url".to_owned(), text: None, extra }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_tools_becomes_a_chat_request() {
        let req = to_chat(
            &json!({
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
            }),
            false,
        )
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
        let param = |v: Value| to_chat(&v, false).unwrap_err().param;
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
            "messages[0].content[0].source"
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
        assert_eq!(param(json!({"model": "m", "max_tokens": 0, "messages": []})), "max_tokens");
        assert_eq!(param(json!({"model": "m", "max_tokens": "many", "messages": []})), "max_tokens");
        let secret = "the prompt itself";
        let bad = to_chat(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": 42}]}], "note": null}),
            false,
        )
        .unwrap_err();
        assert!(bad.param.starts_with("messages[1].content[0]"), "{bad:?}");
        let bad = to_chat(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [
            {"type": "image", "source": {"type": "url", "url": secret}}]}]}),
            false,
        )
        .unwrap_err();
        assert_eq!(bad.param, "messages[0].content[0]");
        assert!(!bad.message.contains(secret), "{bad:?}");
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "content": "x"}]}]})),
            "messages[0].content[0].tool_use_id"
        );
        assert!(param(json!({"model": "m", "max_tokens": 5, "messages": [], "tool_choice": {"type": "sometimes"}}))
            .starts_with("tool_choice"));
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]})),
            "messages[0].content"
        );
    }

    #[test]
    fn current_fields_pass_to_anthropic_and_are_translated_or_named_elsewhere() {
        let body = json!({"model": "m", "max_tokens": 64000, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                {"type": "text", "text": "Summarise"}]}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "output_format": {"type": "json_schema", "schema": {"type": "object"}}});
        let there = serde_json::to_value(to_chat(&body, true).unwrap()).unwrap();
        assert_eq!(there["anthropic"]["thinking"], json!({"type": "adaptive"}));
        assert_eq!(there["anthropic"]["output_config"], json!({"effort": "high"}));
        assert_eq!(there["anthropic"]["context_management"]["edits"][0]["type"], "clear_tool_uses_20250919");
        assert_eq!(there["anthropic"]["output_format"]["type"], "json_schema");
        assert!(there.get("response_format").is_none() && there.get("reasoning_effort").is_none());
        assert_eq!(there["messages"][0]["content"][0]["file"]["file_data"], "data:application/pdf;base64,JVBE");
        let elsewhere = serde_json::to_value(to_chat(&body, false).unwrap()).unwrap();
        assert_eq!(elsewhere["reasoning_effort"], "high");
        assert_eq!(elsewhere["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
        assert!(elsewhere.get("anthropic").is_none(), "context management is dropped where it means nothing");
        // What would change the answer and cannot be honoured is named.
        // Structured outputs where Anthropic moved them, `output_config.format`.
        let moved = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}});
        let v = serde_json::to_value(to_chat(&moved, false).unwrap()).unwrap();
        assert_eq!(v["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
        let v = serde_json::to_value(to_chat(&moved, true).unwrap()).unwrap();
        assert_eq!(v["anthropic"]["output_config"]["format"]["type"], "json_schema");
        let mut mcp = body.clone();
        mcp["mcp_servers"] = json!([{"type": "url", "url": "https://mcp.example", "name": "x"}]);
        assert_eq!(to_chat(&mcp, false).unwrap_err().param, "mcp_servers");
        let passed = serde_json::to_value(to_chat(&mcp, true).unwrap()).unwrap();
        assert_eq!(passed["anthropic"]["mcp_servers"][0]["name"], "x");
    }

    #[test]
    fn images_a_tool_returned_follow_its_result_in_the_users_turn() {
        let req = to_chat(
            &json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "here"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]}]}]}),
            false,
        )
        .unwrap();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["messages"][1], json!({"role": "tool", "tool_call_id": "t1", "content": "here"}));
        assert_eq!(v["messages"][2]["role"], "user");
        assert_eq!(v["messages"][2]["content"][0]["image_url"]["url"], "data:image/png;base64,AAA");
    }
}
