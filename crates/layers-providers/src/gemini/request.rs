//! The OpenAI chat request translated into a Gemini `generateContent` request.
//! Invariant: every field either has a Gemini meaning it is mapped to, or is refused with a 400
//! naming it — nothing the client asked for is dropped silently.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::chat::{ChatMessage, ChatRequest, MessageContent, Role};
use crate::error::ProviderError;
use crate::translate::{self, unsupported};

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
                if let Ok(url) = translate::image_url(&p.extra, &here) {
                    if url.starts_with("http://") || url.starts_with("https://") {
                        out.push((url.to_owned(), here));
                    }
                }
            }
        }
    }
    out
}

/// Builds the `generateContent` body (the model goes in the URL).
pub(super) fn build(req: &ChatRequest, images: &Fetched) -> Result<Value, ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "Gemini models are served with one choice here; `n` must be 1"));
    }
    let mut body = Map::new();
    let (system, contents) = contents(&req.messages, images)?;
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    body.insert("contents".into(), Value::Array(contents));
    let mut config = Map::new();
    if let Some(max) = req.output_cap() {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    let mut tool_choice = None;
    for (name, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "temperature" => {
                config.insert("temperature".into(), value.clone());
            }
            "top_p" => {
                config.insert("topP".into(), value.clone());
            }
            "presence_penalty" => {
                config.insert("presencePenalty".into(), value.clone());
            }
            "frequency_penalty" => {
                config.insert("frequencyPenalty".into(), value.clone());
            }
            "seed" => {
                config.insert("seed".into(), value.clone());
            }
            "stop" => {
                config.insert("stopSequences".into(), Value::Array(translate::stop_sequences(value)?));
            }
            "response_format" => response_format(value, &mut config)?,
            "thinking" => {
                config.insert("thinkingConfig".into(), thinking_config(value)?);
            }
            "reasoning_effort" => {
                let budget = translate::effort_budget(value)?;
                config.insert("thinkingConfig".into(), json!({"thinkingBudget": budget, "includeThoughts": true}));
            }
            "tools" => {
                body.insert("tools".into(), function_declarations(value)?);
            }
            "tool_choice" => tool_choice = Some(value),
            // Gemini calls functions in parallel as it sees fit; asking for no parallel calls
            // cannot be honoured, so only the default is accepted.
            "parallel_tool_calls" if value.as_bool() == Some(true) => {}
            "cache" | "stream_options" | "user" => {}
            "google" => google_options(value, &mut body, &mut config)?,
            other if OTHER_PROVIDERS.contains(&other) => {}
            other => return Err(unsupported(other, &format!("`{other}` is not supported by Gemini models"))),
        }
    }
    if let Some(choice) = tool_choice {
        body.insert("toolConfig".into(), json!({ "functionCallingConfig": function_calling(choice)? }));
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// `thinking: {"type": "enabled", "budget_tokens": N}` as Gemini's `thinkingConfig`.
fn thinking_config(value: &Value) -> Result<Value, ProviderError> {
    let budget = value["budget_tokens"]
        .as_u64()
        .filter(|_| value["type"] == "enabled")
        .ok_or_else(|| unsupported("thinking", "`thinking` must be {\"type\":\"enabled\",\"budget_tokens\":N}"))?;
    Ok(json!({"thinkingBudget": budget, "includeThoughts": true}))
}

/// OpenAI function tools as Gemini `functionDeclarations`.
fn function_declarations(value: &Value) -> Result<Value, ProviderError> {
    let declarations: Vec<Value> = translate::function_tools(value)?
        .into_iter()
        .map(|t| {
            let mut d = json!({"name": t.name, "parameters": t.parameters});
            if let Some(desc) = t.description {
                d["description"] = json!(desc);
            }
            d
        })
        .collect();
    Ok(json!([{ "functionDeclarations": declarations }]))
}

/// The `google` option object: `generationConfig` merges into the config, the rest into the body.
fn google_options(
    value: &Value,
    body: &mut Map<String, Value>,
    config: &mut Map<String, Value>,
) -> Result<(), ProviderError> {
    for (k, v) in translate::option_object("google", value)? {
        if k == "generationConfig" {
            if let Some(extra) = v.as_object() {
                config.extend(extra.clone());
            }
        } else {
            body.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

/// System instruction parts and the conversation (`user` / `model` turns, merged when
/// consecutive), with tool results named after the calls they answer.
fn contents(input: &[ChatMessage], images: &Fetched) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    // Gemini names function responses by function; OpenAI ties them to a call id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in input.iter().enumerate() {
        let here = format!("messages[{i}]");
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                for part in parts(m.content.as_ref(), &format!("{here}.content"), images)? {
                    if part.get("text").is_none() {
                        return Err(unsupported(&format!("{here}.content"), "system messages may contain only text"));
                    }
                    system.push(part);
                }
                continue;
            }
            Role::User => ("user", parts(m.content.as_ref(), &format!("{here}.content"), images)?),
            Role::Assistant => {
                let mut p = parts(m.content.as_ref(), &format!("{here}.content"), images)?;
                for call in translate::tool_calls(m, &here)? {
                    call_names.insert(call.id, call.name);
                    p.push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
                }
                ("model", p)
            }
            Role::Tool => {
                let id = m.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    unsupported(&format!("{here}.tool_call_id"), "a tool message needs `tool_call_id`")
                })?;
                let name = call_names.get(id).ok_or_else(|| {
                    unsupported(&format!("{here}.tool_call_id"), "no earlier assistant tool call has this id")
                })?;
                let text = m.joined_text();
                // A JSON object result is passed as is; anything else is wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({ "content": text }),
                };
                ("user", vec![json!({"functionResponse": {"name": name, "response": response}})])
            }
            Role::Function => {
                return Err(unsupported(
                    &format!("{here}.role"),
                    "the legacy `function` role is not supported; use `tool`",
                ))
            }
        };
        translate::push_turn(&mut out, role, "parts", parts);
    }
    Ok((system, out))
}

fn parts(content: Option<&MessageContent>, param: &str, images: &Fetched) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![json!({ "text": t })]),
        Some(MessageContent::Parts(list)) => list
            .iter()
            .enumerate()
            .filter(|(_, p)| !(p.kind == "text" && p.text.as_deref().is_some_and(str::is_empty)))
            .map(|(j, p)| {
                let here = format!("{param}[{j}]");
                match p.kind.as_str() {
                    "text" => Ok(json!({ "text": p.text.as_deref().unwrap_or_default() })),
                    "image_url" => {
                        let url = translate::image_url(&p.extra, &here)?;
                        let (mime, data) = match (translate::data_url(url, &here), images.get(url)) {
                            (Some(inline), _) => inline?,
                            (None, Some((mime, data))) => (mime.as_str(), data.as_str()),
                            (None, None) => {
                                return Err(unsupported(
                                    &here,
                                    "an image must be an http(s) URL or a base64 `data:` URL",
                                ))
                            }
                        };
                        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    }
                    other => Err(unsupported(
                        &here,
                        &format!("content parts of type `{other}` are not supported by Gemini models"),
                    )),
                }
            })
            .collect(),
    }
}

fn response_format(format: &Value, config: &mut Map<String, Value>) -> Result<(), ProviderError> {
    match format["type"].as_str() {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = &format["json_schema"]["schema"];
            if !schema.is_object() {
                return Err(unsupported("response_format.json_schema.schema", "a JSON schema object is required"));
            }
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        _ => {
            return Err(unsupported(
                "response_format",
                "`response_format.type` must be text, json_object or json_schema",
            ))
        }
    }
    Ok(())
}

fn function_calling(choice: &Value) -> Result<Value, ProviderError> {
    let bad = || unsupported("tool_choice", "`tool_choice` must be auto, none, required or a function");
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"mode": "AUTO"})),
            "none" => Ok(json!({"mode": "NONE"})),
            "required" => Ok(json!({"mode": "ANY"})),
            _ => Err(bad()),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(bad)?;
            Ok(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_json(v: Value) -> Result<Value, ProviderError> {
        build(&serde_json::from_value(v).unwrap(), &Fetched::new())
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
}
