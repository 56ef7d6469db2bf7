//! What the sandbox answers a chat request, decided the way a well-behaved model would and
//! always the same way: a tool call when `tool_choice` demands one or (`auto`) when the user's
//! turn is not a tool result, with arguments valid against the tool's schema; after a tool result
//! a final answer; JSON valid against `response_format`; stop sequences, the output cap and `n`
//! honoured.

use layers_domain::{tokens, Usage};
use serde_json::{json, Map, Value};

use super::schema::{instance, Cues};
use crate::chat::{ChatMessage, ChatRequest, Role};
use crate::error::ProviderError;
use crate::translate::{
    function_tools, response_format, stop_sequences, tool_choice, unsupported, FunctionTool, ResponseFormat, ToolChoice,
};

/// Characters of the user's message echoed back.
const ECHO_CHARS: usize = 200;

/// The longest piece a JSON text is streamed in.
const JSON_PIECE_CHARS: usize = 6;

/// What one choice says.
pub enum Output {
    Text,
    ToolCall { id: String, name: String },
}

/// The reply to a request: its output, split into token-sized pieces (the text, or the tool
/// call's arguments), the same for each of the `n` choices.
pub struct Reply {
    pub output: Output,
    pub pieces: Vec<String>,
    pub finish_reason: &'static str,
    pub usage: Usage,
    pub n: u32,
}

/// The request's options that shape the reply, read through the shared typed views (a malformed
/// one is a 400 naming it, as on every route).
struct Options {
    tools: Vec<FunctionTool>,
    choice: ToolChoice,
    format: Option<ResponseFormat>,
    stops: Vec<String>,
}

fn present<'a>(extra: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    extra.get(key).filter(|v| !v.is_null())
}

impl Options {
    fn of(req: &ChatRequest) -> Result<Options, ProviderError> {
        let e = &req.extra;
        Ok(Options {
            tools: present(e, "tools").map(function_tools).transpose()?.unwrap_or_default(),
            choice: present(e, "tool_choice").map(tool_choice).transpose()?.unwrap_or(ToolChoice::Auto),
            format: present(e, "response_format").map(response_format).transpose()?,
            stops: present(e, "stop").map(stop_sequences).transpose()?.unwrap_or_default(),
        })
    }

    /// The tool to call, if the reply is a tool call.
    fn tool_to_call(&self, messages: &[ChatMessage], said: &str) -> Result<Option<&FunctionTool>, ProviderError> {
        if self.tools.is_empty() {
            return Ok(None);
        }
        let after_result = messages.last().is_some_and(|m| matches!(m.role, Role::Tool | Role::Function));
        match &self.choice {
            ToolChoice::None => Ok(None),
            ToolChoice::Auto if after_result => Ok(None),
            ToolChoice::Function(name) => self.tools.iter().find(|t| &t.name == name).map(Some).ok_or_else(|| {
                unsupported("tool_choice.function.name", "`tool_choice` names a function not in `tools`")
            }),
            ToolChoice::Auto | ToolChoice::Required => {
                // The tool the user's turn names, else the first.
                let said = said.to_lowercase();
                let named = self.tools.iter().find(|t| {
                    let name = t.name.to_lowercase();
                    said.contains(&name) || said.contains(&name.replace('_', " "))
                });
                Ok(named.or(self.tools.first()))
            }
        }
    }
}

impl Reply {
    pub fn for_request(req: &ChatRequest) -> Result<Reply, ProviderError> {
        let options = Options::of(req)?;
        let said = last_text(&req.messages, |r| r == Role::User);
        let mut cues = Cues::new(&said);
        let (output, text, json) = match options.tool_to_call(&req.messages, &said)? {
            Some(tool) => {
                let arguments = instance(&tool.parameters, &tool.parameters, &mut cues);
                let id = format!("call_{:024x}", fingerprint(&tool.name, &req.messages));
                (Output::ToolCall { id, name: tool.name.clone() }, arguments.to_string(), true)
            }
            None => match &options.format {
                Some(ResponseFormat::JsonSchema { schema, .. }) => {
                    (Output::Text, instance(schema, schema, &mut cues).to_string(), true)
                }
                Some(ResponseFormat::JsonObject) => (Output::Text, json_object(&req.messages, &mut cues), true),
                _ => (Output::Text, plain_answer(&req.messages, &said), false),
            },
        };
        let mut finish_reason = match output {
            Output::ToolCall { .. } => "tool_calls",
            Output::Text => "stop",
        };
        let text = match (&output, cut_at_stop(&text, &options.stops)) {
            (Output::Text, Some(cut)) => cut.to_owned(),
            _ => text,
        };
        let mut pieces = if json { split_json(&text) } else { split_tokens(&text) };
        if let Some(max) = req.output_cap() {
            if pieces.len() > max as usize {
                pieces.truncate(max as usize);
                finish_reason = "length";
            }
        }
        let n = req.n.unwrap_or(1).max(1);
        let usage = Usage {
            prompt_tokens: prompt_tokens(req),
            completion_tokens: (pieces.len() as u32).saturating_mul(n),
            ..Usage::default()
        };
        Ok(Reply { output, pieces, finish_reason, usage, n })
    }

    pub fn text(&self) -> String {
        self.pieces.concat()
    }
}

/// What a tokenizer would see of the prompt: the messages' text and the tools' definitions.
pub fn prompt_tokens(req: &ChatRequest) -> u32 {
    let parts = req.prompt_parts();
    let text: usize = req.messages.iter().map(|m| m.joined_text().len()).sum();
    let tools = present(&req.extra, "tools").map_or(0, |t| t.to_string().len());
    tokens::typical_prompt(&tokens::PromptParts { text_bytes: (text + tools) as u64, ..parts })
}

/// The text of the last message whose role `wanted` accepts.
fn last_text(messages: &[ChatMessage], wanted: impl Fn(Role) -> bool) -> String {
    messages.iter().rev().find(|m| wanted(m.role)).map(ChatMessage::joined_text).unwrap_or_default()
}

fn squeeze(text: &str, chars: usize) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(chars).collect()
}

/// The plain answer: an echo of the user's turn, or, after a tool result, what the tool said.
fn plain_answer(messages: &[ChatMessage], said: &str) -> String {
    if let Some(last) = messages.last().filter(|m| matches!(m.role, Role::Tool | Role::Function)) {
        let result = squeeze(&last.joined_text(), ECHO_CHARS);
        return format!("The tool answered: \"{result}\". This answer is deterministic and no model was called.");
    }
    format!(
        "Hello from the Layers sandbox. You said: \"{}\". This answer is deterministic and no model was called.",
        squeeze(said, ECHO_CHARS)
    )
}

/// JSON mode: an object whose keys are the names the prompt quotes (`'setup'` and
/// `'punchline'`), else `{"answer": …}`.
fn json_object(messages: &[ChatMessage], cues: &mut Cues) -> String {
    let all: String = messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer | Role::User))
        .map(ChatMessage::joined_text)
        .collect::<Vec<_>>()
        .join("\n");
    let names = Cues::new(&all).quoted_names();
    let mut out = Map::new();
    if names.is_empty() {
        out.insert("answer".into(), json!(cues.string()));
    }
    for name in names {
        out.insert(name.clone(), json!(format!("{name} from the Layers sandbox")));
    }
    Value::Object(out).to_string()
}

/// The text up to the first stop sequence in it, if any.
fn cut_at_stop<'a>(text: &'a str, stops: &[String]) -> Option<&'a str> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min().map(|at| &text[..at])
}

/// A stable 96-bit fingerprint of a tool name and the conversation (FNV-1a, twice seeded).
fn fingerprint(name: &str, messages: &[ChatMessage]) -> u128 {
    let conversation = serde_json::to_string(messages).unwrap_or_default();
    let hash = |seed: u64| {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in name.bytes().chain(conversation.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    (u128::from(hash(1)) << 32) ^ u128::from(hash(2))
}

/// Splits text like a BPE tokenizer roughly does: a word with its leading space is one piece.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_space = false;
    for c in text.chars() {
        let is_space = c.is_whitespace();
        if is_space && !prev_space && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
        current.push(c);
        prev_space = is_space;
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Splits JSON text into short pieces, as a model streams it.
fn split_json(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(JSON_PIECE_CHARS).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: Value) -> Reply {
        Reply::for_request(&serde_json::from_value(body).unwrap()).unwrap()
    }

    fn magic() -> Value {
        json!([{"type": "function", "function": {"name": "magic_function", "description": "Applies magic",
            "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}, "required": ["input"]}}},
            {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}])
    }

    #[test]
    fn calls_the_named_tool_with_arguments_from_the_prompt() {
        let r = reply(json!({"model": "m", "tools": magic(),
            "messages": [{"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}]}));
        let Output::ToolCall { name, id } = &r.output else { panic!("a tool call") };
        assert_eq!(name, "magic_function");
        assert!(id.starts_with("call_") && id.len() == 29);
        assert_eq!(serde_json::from_str::<Value>(&r.text()).unwrap(), json!({"input": 3}));
        assert_eq!(r.finish_reason, "tool_calls");
    }

    #[test]
    fn tool_choice_decides_and_a_tool_result_gets_an_answer() {
        let named = reply(json!({"model": "m", "tools": magic(),
            "tool_choice": {"type": "function", "function": {"name": "other"}},
            "messages": [{"role": "user", "content": "magic_function please"}]}));
        assert!(matches!(&named.output, Output::ToolCall { name, .. } if name == "other"));
        let none = reply(json!({"model": "m", "tools": magic(), "tool_choice": "none",
            "messages": [{"role": "user", "content": "magic_function please"}]}));
        assert!(matches!(none.output, Output::Text));
        let after = reply(json!({"model": "m", "tools": magic(), "messages": [
            {"role": "user", "content": "magic_function(3)"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "magic_function", "arguments": "{\"input\":3}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "5"}]}));
        assert!(matches!(after.output, Output::Text));
        assert!(after.text().contains("\"5\""));
        let missing = Reply::for_request(
            &serde_json::from_value(json!({"model": "m", "tools": magic(),
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
                "messages": [{"role": "user", "content": "x"}]}))
            .unwrap(),
        );
        assert!(
            matches!(missing, Err(ProviderError::Unsupported { param, .. }) if param == "tool_choice.function.name")
        );
    }

    #[test]
    fn json_modes_give_valid_json() {
        let mode = reply(json!({"model": "m", "response_format": {"type": "json_object"}, "messages": [
            {"role": "user", "content": "Tell me a joke. Return JSON with 'setup' and 'punchline' keys."}]}));
        let v: Value = serde_json::from_str(&mode.text()).unwrap();
        assert!(v["setup"].is_string() && v["punchline"].is_string());
        let schema = reply(json!({"model": "m", "messages": [{"role": "user", "content": "a joke"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "Joke", "strict": true,
                "schema": {"type": "object", "properties": {"rating": {"type": "integer"}}, "required": ["rating"],
                           "additionalProperties": false}}}}));
        assert_eq!(serde_json::from_str::<Value>(&schema.text()).unwrap(), json!({"rating": 0}));
        assert!(schema.pieces.len() > 1, "streamed in pieces");
    }

    #[test]
    fn stop_sequences_n_and_the_cap() {
        let r = reply(json!({"model": "m", "stop": ["sandbox"], "n": 3,
            "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(r.text(), "Hello from the Layers ");
        assert_eq!(r.finish_reason, "stop");
        assert_eq!(r.usage.completion_tokens, 3 * r.pieces.len() as u32);
        let capped = reply(json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!((capped.pieces.len(), capped.finish_reason), (2, "length"));
    }

    #[test]
    fn splits_like_words() {
        assert_eq!(split_tokens("Hello big  world"), vec!["Hello", " big", "  world"]);
    }
}
