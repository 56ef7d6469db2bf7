//! The OpenAI chat request translated into a Gemini `generateContent` request
//! ([`body`](super::body)). Invariant: every field either has a Gemini meaning it is mapped to,
//! or is refused with a 400 naming it — nothing the client asked for is dropped silently.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::body::{
    Blob, Content, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse, GenerateContentRequest,
    GenerationConfig, Part, SystemInstruction, ThinkingConfig, Tool, ToolConfig,
};
use crate::chat::{ChatMessage, ChatRequest, ContentPart, MessageContent, Role};
use crate::error::ProviderError;
use crate::translate::{self, unsupported, MessageFields, ResponseFormat, ToolChoice};

/// Fields of other providers' option objects: meant for another route, not refused here.
const OTHER_PROVIDERS: [&str; 2] = ["openai", "anthropic"];

/// Images given by URL, fetched: URL → (media type, base64 data).
pub(super) type Fetched = HashMap<String, (String, String)>;

/// The http(s) image URLs of the request, with where each is (for errors).
pub(super) fn image_urls(req: &ChatRequest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(list)) = &m.content {
            for (j, p) in list.iter().enumerate().filter(|(_, p)| p.kind == "image_url") {
                let here = format!("messages[{i}].content[{j}]");
                if let Ok(url) = translate::image_url(p, &here) {
                    if url.starts_with("http://") || url.starts_with("https://") {
                        out.push((url, here));
                    }
                }
            }
        }
    }
    out
}

/// Builds the `generateContent` body (the model goes in the URL).
pub(super) fn build(req: &ChatRequest, images: &Fetched) -> Result<GenerateContentRequest, ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "Gemini models are served with one choice here; `n` must be 1"));
    }
    let (system, contents) = contents(&req.messages, images)?;
    let mut body = GenerateContentRequest {
        system_instruction: (!system.is_empty()).then_some(SystemInstruction { parts: system }),
        contents,
        generation_config: GenerationConfig { max_output_tokens: req.output_cap(), ..GenerationConfig::default() },
        ..GenerateContentRequest::default()
    };
    let config = &mut body.generation_config;
    for (name, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        let number = |param| translate::number(value, param).map(Some);
        match name.as_str() {
            "temperature" => config.temperature = number("temperature")?,
            "top_p" => config.top_p = number("top_p")?,
            "presence_penalty" => config.presence_penalty = number("presence_penalty")?,
            "frequency_penalty" => config.frequency_penalty = number("frequency_penalty")?,
            "seed" => config.seed = Some(translate::field(value, "seed")?),
            "stop" => config.stop_sequences = translate::stop_sequences(value)?,
            "response_format" => response_format(translate::response_format(value)?, config),
            "thinking" => config.thinking_config = Some(thinking_config(value)?),
            "reasoning_effort" => {
                let budget = translate::effort_budget(value)?;
                config.thinking_config = Some(ThinkingConfig { thinking_budget: budget, include_thoughts: true });
            }
            "tools" => body.tools = function_declarations(value)?,
            "tool_choice" => body.tool_config = Some(tool_config(translate::tool_choice(value)?)),
            // Gemini calls functions in parallel as it sees fit; asking for no parallel calls
            // cannot be honoured, so only the default is accepted.
            "parallel_tool_calls" if value.as_bool() == Some(true) => {}
            "cache" | "stream_options" | "user" => {}
            "google" => google_options(value, &mut body.options, &mut config.options)?,
            other if OTHER_PROVIDERS.contains(&other) => {}
            other => return Err(unsupported(other, &format!("`{other}` is not supported by Gemini models"))),
        }
    }
    Ok(body)
}

/// `thinking: {"type": "enabled", "budget_tokens": N}` as Gemini's `thinkingConfig`.
fn thinking_config(value: &Value) -> Result<ThinkingConfig, ProviderError> {
    match translate::thinking(value) {
        Ok(translate::Thinking { kind, budget_tokens: Some(budget) }) if kind == "enabled" => {
            Ok(ThinkingConfig { thinking_budget: budget, include_thoughts: true })
        }
        _ => Err(unsupported("thinking", "`thinking` must be {\"type\":\"enabled\",\"budget_tokens\":N}")),
    }
}

/// OpenAI function tools as Gemini `functionDeclarations`.
fn function_declarations(value: &Value) -> Result<Vec<Tool>, ProviderError> {
    let function_declarations = translate::function_tools(value)?
        .into_iter()
        .map(|t| FunctionDeclaration { name: t.name, description: t.description, parameters: t.parameters })
        .collect();
    Ok(vec![Tool { function_declarations }])
}

/// The `google` option object: `generationConfig` goes over the config, the rest over the body.
fn google_options(
    value: &Value,
    body: &mut Map<String, Value>,
    config: &mut Map<String, Value>,
) -> Result<(), ProviderError> {
    for (k, v) in translate::option_object("google", value)? {
        match (k.as_str(), v) {
            ("generationConfig", Value::Object(extra)) => config.extend(extra.clone()),
            ("generationConfig", _) => {}
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// System instruction parts and the conversation (`user` / `model` turns, merged when
/// consecutive), with tool results named after the calls they answer.
fn contents(input: &[ChatMessage], images: &Fetched) -> Result<(Vec<Part>, Vec<Content>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<Content> = Vec::new();
    // Gemini names function responses by function; OpenAI ties them to a call id.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in input.iter().enumerate() {
        let here = format!("messages[{i}]");
        let content = format!("{here}.content");
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                for part in parts(m.content.as_ref(), &content, images)? {
                    if !matches!(part, Part::Text(_)) {
                        return Err(unsupported(&content, "system messages may contain only text"));
                    }
                    system.push(part);
                }
                continue;
            }
            Role::User => ("user", parts(m.content.as_ref(), &content, images)?),
            Role::Assistant => {
                let mut p = parts(m.content.as_ref(), &content, images)?;
                for call in MessageFields::of(m, &here)?.tool_calls(&here)? {
                    call_names.insert(call.id, call.name.clone());
                    p.push(Part::FunctionCall(FunctionCall { name: call.name, args: call.arguments }));
                }
                ("model", p)
            }
            Role::Tool => ("user", vec![function_response(m, &here, &call_names)?]),
            Role::Function => {
                return Err(unsupported(
                    &format!("{here}.role"),
                    "the legacy `function` role is not supported; use `tool`",
                ))
            }
        };
        translate::push_turn(&mut out, role, parts);
    }
    Ok((system, out))
}

/// A tool message as the `functionResponse` of the call it answers: a JSON object result is
/// passed as is; anything else is wrapped as `{"content": …}`.
fn function_response(m: &ChatMessage, here: &str, call_names: &HashMap<String, String>) -> Result<Part, ProviderError> {
    let fields = MessageFields::of(m, here)?;
    let id = fields.answered_call(here)?;
    let name = call_names
        .get(id)
        .ok_or_else(|| unsupported(&format!("{here}.tool_call_id"), "no earlier assistant tool call has this id"))?;
    let text = m.joined_text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => o,
        _ => Map::from_iter([("content".to_owned(), Value::String(text))]),
    };
    Ok(Part::FunctionResponse(FunctionResponse { name: name.clone(), response }))
}

fn parts(content: Option<&MessageContent>, param: &str, images: &Fetched) -> Result<Vec<Part>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![Part::Text(t.clone())]),
        Some(MessageContent::Parts(list)) => list
            .iter()
            .enumerate()
            .filter(|(_, p)| !(p.kind == "text" && p.text.as_deref().is_some_and(str::is_empty)))
            .map(|(j, p)| part(p, &format!("{param}[{j}]"), images))
            .collect(),
    }
}

fn part(p: &ContentPart, here: &str, images: &Fetched) -> Result<Part, ProviderError> {
    match p.kind.as_str() {
        "text" => Ok(Part::Text(p.text.clone().unwrap_or_default())),
        "image_url" => {
            let url = translate::image_url(p, here)?;
            let (mime, data) = match (translate::data_url(&url, here), images.get(&url)) {
                (Some(inline), _) => inline?,
                (None, Some((mime, data))) => (mime.as_str(), data.as_str()),
                (None, None) => {
                    return Err(unsupported(here, "an image must be an http(s) URL or a base64 `data:` URL"))
                }
            };
            Ok(Part::InlineData(Blob { mime_type: mime.to_owned(), data: data.to_owned() }))
        }
        other => Err(unsupported(here, &format!("content parts of type `{other}` are not supported by Gemini models"))),
    }
}

/// `response_format`: JSON answers by media type, a schema as `responseJsonSchema`.
fn response_format(format: ResponseFormat, config: &mut GenerationConfig) {
    match format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => config.response_mime_type = Some("application/json"),
        ResponseFormat::JsonSchema { schema, .. } => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema = Some(schema);
        }
    }
}

fn tool_config(choice: ToolChoice) -> ToolConfig {
    let (mode, allowed_function_names) = match choice {
        ToolChoice::Auto => ("AUTO", Vec::new()),
        ToolChoice::None => ("NONE", Vec::new()),
        ToolChoice::Required => ("ANY", Vec::new()),
        ToolChoice::Function(name) => ("ANY", vec![name]),
    };
    ToolConfig { function_calling_config: FunctionCallingConfig { mode, allowed_function_names } }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    /// The body as Gemini receives it.
    fn build_json(v: Value) -> Result<Value, ProviderError> {
        let body = build(&serde_json::from_value(v).unwrap(), &Fetched::new())?;
        Ok(serde_json::from_slice(&body.encode()?).unwrap())
    }

    #[test]
    fn turns_tools_images_and_config() {
        let body = build_json(json!({
            "model": "google/gemini", "max_tokens": 100, "temperature": 0.4, "stop": ["END"], "seed": 3,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "system", "content": "Be exact."},
                {"role": "user", "content": [{"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"found\":true}"},
                {"role": "tool", "tool_call_id": "call_1", "content": "plain text"}
            ]
        }))
        .unwrap();
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be exact."}]}));
        let contents = body["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert_eq!(contents[0]["parts"][1], json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}));
        assert_eq!(
            contents[1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]})
        );
        assert_eq!(
            contents[2]["parts"][0],
            json!({"functionResponse": {"name": "lookup", "response": {"found": true}}})
        );
        assert_eq!(contents[2]["parts"][1]["functionResponse"]["response"], json!({"content": "plain text"}));
        let config = &body["generationConfig"];
        assert_eq!(config["maxOutputTokens"], 100);
        assert_eq!(config["temperature"], 0.4);
        assert_eq!(config["stopSequences"], json!(["END"]));
        assert_eq!(config["seed"], 3);
        assert_eq!(config["responseMimeType"], "application/json");
        assert_eq!(config["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "lookup");
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    }

    #[test]
    fn thinking_and_refusals() {
        let body = build_json(json!({"model": "g", "thinking": {"type": "enabled", "budget_tokens": 512},
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap();
        assert_eq!(body["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 512, "includeThoughts": true}));
        let param = |v: Value| match build_json(v) {
            Err(ProviderError::Unsupported { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        let user = json!([{"role": "user", "content": "x"}]);
        assert_eq!(param(json!({"model": "g", "messages": user, "logprobs": true})), "logprobs");
        assert_eq!(param(json!({"model": "g", "messages": user, "parallel_tool_calls": false})), "parallel_tool_calls");
        assert_eq!(
            param(
                json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})
            ),
            "messages[0].content[0]"
        );
        assert_eq!(
            param(json!({"model": "g", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})),
            "messages[0].tool_call_id"
        );
    }

    #[test]
    fn the_google_object_goes_over_the_body_and_the_config() {
        let body = build_json(json!({"model": "g", "temperature": 0.1, "messages": [{"role": "user", "content": "x"}],
            "google": {"safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
                       "generationConfig": {"temperature": 0.7, "topK": 4}}}))
        .unwrap();
        assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(body["generationConfig"], json!({"temperature": 0.7, "topK": 4}));
        let param = |v: Value| match build_json(v) {
            Err(ProviderError::Unsupported { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        let user = json!([{"role": "user", "content": "x"}]);
        assert_eq!(param(json!({"model": "g", "messages": user, "seed": "seven"})), "seed");
        assert_eq!(param(json!({"model": "g", "messages": user, "thinking": {"type": "enabled"}})), "thinking");
        assert_eq!(
            param(json!({"model": "g", "messages": [{"role": "tool", "tool_call_id": 5, "content": "x"}]})),
            "messages[0].tool_call_id"
        );
    }
}
