//! A Responses request ([`inbound`](super::inbound)) translated into the OpenAI chat shape the
//! gateway runs on any route, and the request fields the response object echoes. Invariant:
//! every field either maps to its chat equivalent, is accepted because it changes nothing a
//! stateless gateway returns (`include`, `truncation`, `stream_options`), or is refused with a
//! 400 naming it (`previous_response_id`, `store: true`, built-in tools, `input[3].file_id`), so
//! no instruction is silently lost.

use serde_json::{json, Map, Value};

use layers_providers::chat::{ChatMessage, ContentPart, MessageContent, Role, StreamOptions};
use layers_providers::{ChatRequest, ProviderError};

use super::inbound::{
    Format, FunctionCall, FunctionCallOutput, InputMessage, MessageRole, Part, ResponsesRequest, TextConfig,
};
use crate::messages_dialect::inbound::TextOr;
pub use crate::messages_dialect::request::Invalid;

fn invalid(param: &str, message: &str) -> Invalid {
    Invalid { param: param.to_owned(), message: message.to_owned() }
}

/// What the chat pipeline runs, and what the response object repeats of the request.
pub struct Translated {
    pub chat: ChatRequest,
    pub echo: Map<String, Value>,
}

/// Fields of the chat request the translation sets itself.
const CHAT_FIELDS: [&str; 8] =
    ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "response_format"];

const NOT_STORED: &str = "this gateway does not store responses: send the whole conversation in `input`";

/// Translates the body of `POST /v1/responses`.
pub fn to_chat(body: &Value) -> Result<Translated, Invalid> {
    if !body.is_object() {
        return Err(invalid("body", "the body must be a JSON object"));
    }
    let req: ResponsesRequest = layers_providers::translate::field(body, "").map_err(|e| match e {
        ProviderError::Unsupported { param, message } => Invalid { param, message },
        _ => invalid("body", "the body is not a Responses request"),
    })?;
    refuse_state(&req)?;
    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(message(Role::System, MessageContent::Text(instructions.clone())));
    }
    match &req.input {
        Some(TextOr::Text(text)) => messages.push(message(Role::User, MessageContent::Text(text.clone()))),
        Some(TextOr::Blocks(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, &format!("input[{i}]"), &mut messages)?;
            }
        }
        None => {}
    }
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(invalid("input", "`input` must hold at least one message"));
    }
    let echo = echo(&req);
    let stream = req.stream.unwrap_or(false);
    let mut extra = req.extra;
    // The chat shape's own fields are set from the Responses fields above, never from a
    // client's extra: an `n` or `messages` sent here would reach the provider beside them.
    for reserved in CHAT_FIELDS {
        if extra.get(reserved).is_some_and(|v| !v.is_null()) {
            return Err(invalid(reserved, "not a Responses API field (the Responses fields set it)"));
        }
        extra.remove(reserved);
    }
    let mut put = |key: &str, value: Value| {
        extra.insert(key.to_owned(), value);
    };
    if let Some(t) = req.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = req.top_p {
        put("top_p", json!(p));
    }
    if let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) {
        put("tools", self::tools(tools)?);
    }
    if let Some(choice) = req.tool_choice.as_ref().filter(|c| !c.is_null()) {
        put("tool_choice", tool_choice(choice)?);
    }
    if let Some(parallel) = req.parallel_tool_calls {
        put("parallel_tool_calls", json!(parallel));
    }
    if let Some(TextConfig { format, verbosity }) = req.text {
        if let Some(format) = response_format(format) {
            put("response_format", format);
        }
        if let Some(v) = verbosity {
            put("verbosity", json!(v));
        }
    }
    if let Some(effort) = req.reasoning.and_then(|r| r.effort).filter(|e| e != "none") {
        put("reasoning_effort", json!(effort));
    }
    for (key, value) in [
        ("user", req.user),
        ("service_tier", req.service_tier),
        ("safety_identifier", req.safety_identifier),
        ("prompt_cache_key", req.prompt_cache_key),
    ] {
        if let Some(v) = value {
            put(key, json!(v));
        }
    }
    let chat = ChatRequest {
        model: req.model,
        messages,
        stream: Some(stream),
        // The Responses stream always ends with usage (`response.completed`).
        stream_options: stream.then(|| StreamOptions { include_usage: Some(true), extra: Map::new() }),
        max_tokens: None,
        max_completion_tokens: req.max_output_tokens,
        n: None,
        extra,
        gateway_output_cap: None,
        anthropic_beta: None,
    };
    Ok(Translated { chat, echo })
}

/// What needs stored state or a server-side feature this gateway does not run.
fn refuse_state(req: &ResponsesRequest) -> Result<(), Invalid> {
    if req.previous_response_id.as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(invalid("previous_response_id", NOT_STORED));
    }
    if req.store == Some(true) {
        return Err(invalid("store", "this gateway does not store responses: send `store: false` (or leave it out)"));
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(invalid("conversation", NOT_STORED));
    }
    if req.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(invalid("prompt", "stored prompt templates are not supported: send `instructions` and `input`"));
    }
    if req.background == Some(true) {
        return Err(invalid("background", "background responses are not supported: stream the response instead"));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(invalid("top_logprobs", "log probabilities are not returned by this gateway"));
    }
    if req.max_tool_calls.is_some() {
        return Err(invalid("max_tool_calls", "built-in tools are not supported, so neither is `max_tool_calls`"));
    }
    Ok(())
}

fn message(role: Role, content: MessageContent) -> ChatMessage {
    ChatMessage { role, content: Some(content), extra: Map::new() }
}

/// One item of `input`, appended to the chat messages.
fn input_item(item: &Value, param: &str, out: &mut Vec<ChatMessage>) -> Result<(), Invalid> {
    let typed = |e: ProviderError| match e {
        ProviderError::Unsupported { param, message } => Invalid { param, message },
        _ => invalid(param, "malformed input item"),
    };
    let kind = match item.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err(invalid(&format!("{param}.type"), "`type` must be a string")),
    };
    match kind {
        "message" => {
            let m: InputMessage = layers_providers::translate::field(item, param).map_err(typed)?;
            out.push(input_message(m, param)?);
        }
        "function_call" => {
            let call: FunctionCall = layers_providers::translate::field(item, param).map_err(typed)?;
            let tool_call = json!({"id": call.call_id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}});
            // Consecutive calls are one assistant turn (parallel tool calls).
            match out.last_mut() {
                Some(last) if last.role == Role::Assistant && last.extra.contains_key("tool_calls") => {
                    if let Some(Value::Array(calls)) = last.extra.get_mut("tool_calls") {
                        calls.push(tool_call);
                    }
                }
                _ => {
                    let mut extra = Map::new();
                    extra.insert("tool_calls".to_owned(), json!([tool_call]));
                    out.push(ChatMessage { role: Role::Assistant, content: None, extra });
                }
            }
        }
        "function_call_output" => {
            let result: FunctionCallOutput = layers_providers::translate::field(item, param).map_err(typed)?;
            let content = match result.output {
                TextOr::Text(t) => MessageContent::Text(t),
                TextOr::Blocks(parts) => MessageContent::Parts(parts_of(parts, &format!("{param}.output"))?),
            };
            let mut extra = Map::new();
            extra.insert("tool_call_id".to_owned(), json!(result.call_id));
            out.push(ChatMessage { role: Role::Tool, content: Some(content), extra });
        }
        // Reasoning of an earlier turn: a stateless gateway has nothing to attach it to, and
        // every provider reasons afresh without it.
        "reasoning" => {}
        "item_reference" => return Err(invalid(param, NOT_STORED)),
        _ => {
            return Err(invalid(
                &format!("{param}.type"),
                "only message, function_call, function_call_output and reasoning items are supported",
            ))
        }
    }
    Ok(())
}

fn input_message(m: InputMessage, param: &str) -> Result<ChatMessage, Invalid> {
    let role = match m.role {
        MessageRole::User => Role::User,
        MessageRole::System => Role::System,
        MessageRole::Developer => Role::Developer,
        MessageRole::Assistant => Role::Assistant,
    };
    let content = match m.content {
        TextOr::Text(t) => MessageContent::Text(t),
        // An assistant turn is text (the chat shape has no images there).
        TextOr::Blocks(parts) if role == Role::Assistant => {
            let parts = parts_of(parts, &format!("{param}.content"))?;
            MessageContent::Text(parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join(""))
        }
        TextOr::Blocks(parts) => MessageContent::Parts(parts_of(parts, &format!("{param}.content"))?),
    };
    Ok(message(role, content))
}

fn parts_of(parts: Vec<Part>, param: &str) -> Result<Vec<ContentPart>, Invalid> {
    let text = |t: String| ContentPart { kind: "text".to_owned(), text: Some(t), extra: Map::new() };
    let with = |kind: &str, key: &str, value: Value| {
        let mut extra = Map::new();
        extra.insert(key.to_owned(), value);
        ContentPart { kind: kind.to_owned(), text: None, extra }
    };
    parts
        .into_iter()
        .enumerate()
        .map(|(j, part)| {
            let here = format!("{param}[{j}]");
            Ok(match part {
                Part::InputText { text: t } | Part::OutputText { text: t } | Part::Refusal { refusal: t } => text(t),
                Part::InputImage { file_id: Some(_), .. } => {
                    return Err(invalid(
                        &format!("{here}.file_id"),
                        "uploaded files are not supported: send `image_url`",
                    ))
                }
                Part::InputImage { image_url: Some(url), detail, .. } => {
                    let mut image = json!({"url": url});
                    if let Some(d) = detail {
                        image["detail"] = json!(d);
                    }
                    with("image_url", "image_url", image)
                }
                Part::InputImage { .. } => {
                    return Err(invalid(&format!("{here}.image_url"), "an image needs `image_url`"))
                }
                Part::InputFile { file_id: Some(_), .. } | Part::InputFile { file_url: Some(_), .. } => {
                    return Err(invalid(&here, "files by id or URL are not supported: send `file_data`"))
                }
                Part::InputFile { file_data: Some(data), filename, .. } => {
                    let mut file = json!({"file_data": data});
                    if let Some(name) = filename {
                        file["filename"] = json!(name);
                    }
                    with("file", "file", file)
                }
                Part::InputFile { .. } => {
                    return Err(invalid(&format!("{here}.file_data"), "a file needs `file_data`"))
                }
                Part::InputAudio {} => return Err(invalid(&here, "audio input is not supported")),
            })
        })
        .collect()
}

/// Function tools in the chat shape; built-in tools are refused by index.
fn tools(tools: &[super::inbound::Tool]) -> Result<Value, Invalid> {
    let mut list = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(invalid(
                &format!("tools[{i}].type"),
                "only `function` tools are supported through this gateway",
            ));
        }
        let name = t.name.as_deref().ok_or_else(|| invalid(&format!("tools[{i}].name"), "a function needs a name"))?;
        let mut f = json!({"name": name, "parameters": t.parameters.clone().unwrap_or(json!({"type": "object"}))});
        if let Some(d) = &t.description {
            f["description"] = json!(d);
        }
        if let Some(strict) = t.strict {
            f["strict"] = json!(strict);
        }
        list.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(list))
}

/// `tool_choice` in the chat shape.
fn tool_choice(choice: &Value) -> Result<Value, Invalid> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Choice {
        Mode(String),
        Function {
            #[serde(rename = "type")]
            kind: String,
            name: String,
        },
    }
    let bad = || invalid("tool_choice", "`tool_choice` must be auto, none, required or a function");
    match serde_json::from_value::<Choice>(choice.clone()).map_err(|_| bad())? {
        Choice::Mode(m) if ["auto", "none", "required"].contains(&m.as_str()) => Ok(json!(m)),
        Choice::Function { kind, name } if kind == "function" => {
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(bad()),
    }
}

/// `text.format` as the chat `response_format` (`None` for plain text).
fn response_format(format: Option<Format>) -> Option<Value> {
    match format? {
        Format::Text => None,
        Format::JsonObject => Some(json!({"type": "json_object"})),
        Format::JsonSchema { name, schema, strict, description } => {
            let mut s = json!({"name": name.unwrap_or_else(|| "response".to_owned()), "schema": schema});
            if let Some(strict) = strict {
                s["strict"] = json!(strict);
            }
            if let Some(d) = description {
                s["description"] = json!(d);
            }
            Some(json!({"type": "json_schema", "json_schema": s}))
        }
    }
}

/// The request fields a response object repeats, with OpenAI's defaults where absent.
fn echo(req: &ResponsesRequest) -> Map<String, Value> {
    let tools: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .map(|t| {
            json!({"type": t.kind, "name": t.name, "description": t.description,
                   "parameters": t.parameters, "strict": t.strict.unwrap_or(true)})
        })
        .collect();
    let format = match req.text.as_ref().and_then(|t| t.format.as_ref()) {
        None | Some(Format::Text) => json!({"type": "text"}),
        Some(Format::JsonObject) => json!({"type": "json_object"}),
        Some(Format::JsonSchema { name, schema, strict, description }) => json!({"type": "json_schema",
            "name": name.as_deref().unwrap_or("response"), "schema": schema, "strict": strict, "description": description}),
    };
    let mut text = json!({"format": format});
    if let Some(v) = req.text.as_ref().and_then(|t| t.verbosity.as_ref()) {
        text["verbosity"] = json!(v);
    }
    let tool_choice = match &req.tool_choice {
        Some(Value::Object(o)) => json!({"type": "function", "name": o.get("name")}),
        Some(Value::String(s)) => json!(s),
        _ => json!("auto"),
    };
    let effort = req.reasoning.as_ref().and_then(|r| r.effort.clone());
    let summary = req.reasoning.as_ref().and_then(|r| r.summary.clone());
    let mut m = Map::new();
    m.insert("instructions".into(), json!(req.instructions));
    m.insert("max_output_tokens".into(), json!(req.max_output_tokens));
    m.insert("metadata".into(), json!(req.metadata.clone().unwrap_or_default()));
    m.insert("parallel_tool_calls".into(), json!(req.parallel_tool_calls.unwrap_or(true)));
    m.insert("previous_response_id".into(), Value::Null);
    m.insert("reasoning".into(), json!({"effort": effort, "summary": summary}));
    m.insert("store".into(), json!(false));
    m.insert("temperature".into(), json!(req.temperature.unwrap_or(1.0)));
    m.insert("text".into(), text);
    m.insert("tool_choice".into(), tool_choice);
    m.insert("tools".into(), Value::Array(tools));
    m.insert("top_p".into(), json!(req.top_p.unwrap_or(1.0)));
    m.insert("truncation".into(), json!(req.truncation.as_deref().unwrap_or("disabled")));
    m.insert("user".into(), json!(req.user));
    m.insert("background".into(), json!(false));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> ChatRequest {
        to_chat(&body).unwrap().chat
    }

    fn refused(body: Value) -> String {
        to_chat(&body).err().expect("refused").param
    }

    #[test]
    fn a_string_input_with_instructions() {
        let c = chat(json!({"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 50,
                            "stream": true, "temperature": 0.2, "seed": 7}));
        assert_eq!(c.messages.len(), 2);
        assert_eq!((c.messages[0].role, c.messages[1].role), (Role::System, Role::User));
        assert_eq!(c.max_completion_tokens, Some(50));
        assert!(c.is_stream() && c.wants_stream_usage());
        assert_eq!(c.extra["temperature"], 0.2);
        assert_eq!(c.extra["seed"], 7, "unknown fields go on to the chat pipeline");
    }

    #[test]
    fn items_become_turns_and_tools_functions() {
        let c = chat(
            json!({"model": "m", "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"},
                "strict": true}], "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "X", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low", "summary": "auto"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": "two"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
            ]}),
        );
        let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool, Role::Assistant]);
        assert_eq!(c.messages[1].extra["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(c.messages[2].extra["tool_call_id"], "c1");
        assert_eq!(c.extra["tools"][0]["function"]["name"], "f");
        assert_eq!(c.extra["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
        assert_eq!(c.extra["response_format"]["json_schema"]["name"], "X");
        assert_eq!(c.extra["reasoning_effort"], "low");
        let Some(MessageContent::Parts(parts)) = &c.messages[0].content else { panic!("parts") };
        assert_eq!(parts[1].kind, "image_url");
        assert_eq!(parts[1].extra["image_url"], json!({"url": "https://x/y.png", "detail": "low"}));
    }

    #[test]
    fn state_and_builtin_tools_are_refused_by_name() {
        assert_eq!(
            refused(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"})),
            "previous_response_id"
        );
        assert_eq!(refused(json!({"model": "m", "input": "x", "store": true})), "store");
        assert_eq!(refused(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})), "tools[0].type");
        assert_eq!(refused(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})), "input[0]");
        assert_eq!(
            refused(
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})
            ),
            "input[0].content[0].file_id"
        );
        assert_eq!(refused(json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]})), "input[0].role");
        assert_eq!(refused(json!({"model": "m"})), "input");
        // The chat shape's own fields cannot be smuggled beside the Responses fields.
        assert_eq!(refused(json!({"model": "m", "input": "x", "n": 8})), "n");
        assert_eq!(refused(json!({"model": "m", "input": "x", "messages": []})), "messages");
        assert!(to_chat(
            &json!({"model": "m", "input": "x", "store": false, "include": ["reasoning.encrypted_content"],
            "truncation": "auto"})
        )
        .is_ok());
    }
}
