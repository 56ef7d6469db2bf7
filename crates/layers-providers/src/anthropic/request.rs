//! The OpenAI chat request translated into an Anthropic Messages request ([`body`](super::body)).
//! Invariant: every field either has an Anthropic meaning it is mapped to, or is refused with a
//! 400 naming it — nothing the client asked for is dropped silently.

use serde_json::{json, Value};

use super::body::{
    Block, BlockKind, CacheControl, ChoiceKind, ImageSource, MessagesRequest, Metadata, Tool, ToolChoice, Turn,
};
use crate::chat::{ChatMessage, ChatRequest, ContentPart, MessageContent, Role};
use crate::error::ProviderError;
use crate::translate::{self, unsupported, MessageFields, ResponseFormat, ThinkingBlock};

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
) -> Result<(MessagesRequest, Mode), ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "Anthropic models return one choice; `n` must be 1"));
    }
    let (system, messages) = messages(&req.messages)?;
    let mut body = MessagesRequest {
        model: upstream_model.to_owned(),
        max_tokens: req.output_cap().unwrap_or(default_max).max(1),
        system,
        messages,
        stream,
        ..MessagesRequest::default()
    };
    let mut mode = Mode::default();
    let mut parallel_tools = None;
    let mut choice = None;
    let mut cache = false;
    let mut client_tools = false;
    for (name, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "temperature" => {
                let t = translate::number(value, "temperature")?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(unsupported("temperature", "Anthropic models accept a temperature between 0 and 1"));
                }
                body.temperature = Some(t);
            }
            "top_p" => body.top_p = Some(translate::number(value, "top_p")?),
            "stop" => body.stop_sequences = translate::stop_sequences(value)?,
            "tools" => {
                body.tools = tools(value)?;
                client_tools = true;
            }
            "tool_choice" => choice = Some(translate::tool_choice(value)?),
            "parallel_tool_calls" => parallel_tools = value.as_bool(),
            "response_format" => mode.json_tool = json_tool(&translate::response_format(value)?, &mut body),
            "thinking" => body.thinking = Some(translate::thinking(value)?),
            "reasoning_effort" => {
                let budget = translate::effort_budget(value)?;
                body.thinking = Some(translate::Thinking { kind: "enabled".into(), budget_tokens: Some(budget) });
            }
            "user" => body.metadata = Some(Metadata { user_id: translate::field(value, "user")? }),
            "cache" => cache = value.as_bool().unwrap_or(false),
            "stream_options" => {}
            "anthropic" => body.options = translate::option_object("anthropic", value)?.clone(),
            other if OTHER_PROVIDERS.contains(&other) => {}
            other => {
                return Err(unsupported(other, &format!("`{other}` is not supported by Anthropic models")));
            }
        }
    }
    if mode.json_tool && (client_tools || choice.is_some()) {
        return Err(unsupported(
            "response_format",
            "`response_format` cannot be combined with `tools` on Anthropic models",
        ));
    }
    if cache {
        mark_cache_prefix(&mut body);
    }
    match &mut body.tool_choice {
        // The JSON tool's forced call.
        Some(forced) => forced.disable_parallel_tool_use |= parallel_tools == Some(false),
        None => body.tool_choice = tool_choice(choice, parallel_tools, !body.tools.is_empty()),
    }
    Ok((body, mode))
}

/// Prompt caching: marks the last system block and the last message's last block.
fn mark_cache_prefix(body: &mut MessagesRequest) {
    let last_block = body.messages.last_mut().and_then(|m| m.content.last_mut());
    for block in last_block.into_iter().chain(body.system.last_mut()) {
        block.cache_control = Some(CacheControl::EPHEMERAL);
    }
}

/// `tool_choice`, with `parallel_tool_calls: false` as Anthropic's `disable_parallel_tool_use`.
fn tool_choice(
    choice: Option<translate::ToolChoice>,
    parallel_tools: Option<bool>,
    has_tools: bool,
) -> Option<ToolChoice> {
    let serial = parallel_tools == Some(false);
    let kind = match choice {
        Some(translate::ToolChoice::Auto) => ChoiceKind::Auto,
        Some(translate::ToolChoice::None) => ChoiceKind::None,
        Some(translate::ToolChoice::Required) => ChoiceKind::Any,
        Some(translate::ToolChoice::Function(name)) => ChoiceKind::Tool { name },
        None if serial && has_tools => ChoiceKind::Auto,
        None => return None,
    };
    let disable_parallel_tool_use = serial && kind != ChoiceKind::None;
    Some(ToolChoice { kind, disable_parallel_tool_use })
}

/// System prompts (system and developer messages, in order) and the conversation, with
/// consecutive messages of one role merged (Anthropic alternates user and assistant).
fn messages(input: &[ChatMessage]) -> Result<(Vec<Block>, Vec<Turn>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<Turn> = Vec::new();
    for (i, m) in input.iter().enumerate() {
        let here = format!("messages[{i}]");
        let content = format!("{here}.content");
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                for block in content_blocks(m.content.as_ref(), &content)? {
                    if !matches!(block.kind, BlockKind::Text { .. }) {
                        return Err(unsupported(&content, "system messages may contain only text"));
                    }
                    system.push(block);
                }
                continue;
            }
            Role::User => ("user", content_blocks(m.content.as_ref(), &content)?),
            Role::Assistant => ("assistant", assistant_blocks(m, &here)?),
            Role::Tool => ("user", vec![tool_result(m, &here)?]),
            Role::Function => {
                return Err(unsupported(
                    &format!("{here}.role"),
                    "the legacy `function` role is not supported; use `tool`",
                ))
            }
        };
        translate::push_turn(&mut out, role, blocks);
    }
    Ok((system, out))
}

fn content_blocks(content: Option<&MessageContent>, param: &str) -> Result<Vec<Block>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![BlockKind::Text { text: t.clone() }.into()]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !(p.kind == "text" && p.text.as_deref().is_some_and(str::is_empty)))
            .map(|(j, p)| part_block(p, &format!("{param}[{j}]")).map(Block::from))
            .collect(),
    }
}

fn part_block(part: &ContentPart, param: &str) -> Result<BlockKind, ProviderError> {
    match part.kind.as_str() {
        "text" => Ok(BlockKind::Text { text: part.text.clone().unwrap_or_default() }),
        "image_url" => {
            let url = translate::image_url(part, param)?;
            Ok(BlockKind::Image { source: image_source(url, param)? })
        }
        other => {
            Err(unsupported(param, &format!("content parts of type `{other}` are not supported by Anthropic models")))
        }
    }
}

/// An image by URL, or a `data:` URL as base64 (the four media types Anthropic accepts).
fn image_source(url: String, param: &str) -> Result<ImageSource, ProviderError> {
    let Some(data_url) = translate::data_url(&url, param) else {
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(ImageSource::Url { url });
        }
        return Err(unsupported(param, "an image must be an http(s) URL or a base64 `data:` URL"));
    };
    let (media_type, data) = data_url?;
    if !matches!(media_type, "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
        return Err(unsupported(param, "images must be JPEG, PNG, GIF or WebP"));
    }
    Ok(ImageSource::Base64 { media_type: media_type.to_owned(), data: data.to_owned() })
}

fn assistant_blocks(m: &ChatMessage, here: &str) -> Result<Vec<Block>, ProviderError> {
    let content = format!("{here}.content");
    let mut blocks = content_blocks(m.content.as_ref(), &content)?;
    if blocks.iter().any(|b| !matches!(b.kind, BlockKind::Text { .. })) {
        return Err(unsupported(&content, "assistant messages may contain only text and tool calls"));
    }
    let fields = MessageFields::of(m, here)?;
    // Signed thinking from an earlier answer goes first, as Anthropic requires.
    let signed = fields.thinking_blocks.iter().flatten().filter(|b| b.is_signed()).map(|b| match b.clone() {
        ThinkingBlock::Thinking { thinking, signature } => BlockKind::Thinking { thinking, signature }.into(),
        ThinkingBlock::RedactedThinking { data } => BlockKind::RedactedThinking { data }.into(),
    });
    blocks.splice(0..0, signed);
    for call in fields.tool_calls(here)? {
        blocks.push(BlockKind::ToolUse { id: call.id, name: call.name, input: call.arguments }.into());
    }
    Ok(blocks)
}

fn tool_result(m: &ChatMessage, here: &str) -> Result<Block, ProviderError> {
    let fields = MessageFields::of(m, here)?;
    let tool_use_id = fields.answered_call(here)?.to_owned();
    let content = content_blocks(m.content.as_ref(), &format!("{here}.content"))?;
    Ok(BlockKind::ToolResult { tool_use_id, content }.into())
}

fn tools(value: &Value) -> Result<Vec<Tool>, ProviderError> {
    Ok(translate::function_tools(value)?
        .into_iter()
        .map(|t| Tool { name: t.name, description: t.description, input_schema: t.parameters })
        .collect())
}

/// `response_format`: text needs nothing; JSON (object or schema) becomes a forced tool call.
fn json_tool(format: &ResponseFormat, body: &mut MessagesRequest) -> bool {
    let (schema, description) = match format {
        ResponseFormat::Text => return false,
        ResponseFormat::JsonObject => (json!({"type": "object"}), None),
        ResponseFormat::JsonSchema { schema, description } => (schema.clone(), description.clone()),
    };
    let description = description.unwrap_or_else(|| "Respond with the answer as JSON.".to_owned());
    body.tools = vec![Tool { name: JSON_TOOL.to_owned(), description: Some(description), input_schema: schema }];
    body.tool_choice =
        Some(ToolChoice { kind: ChoiceKind::Tool { name: JSON_TOOL.to_owned() }, disable_parallel_tool_use: false });
    true
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
