//! The messages of an OpenAI chat request as types: image parts, and what an assistant or tool
//! message carries beside its content; and turns merged the way native APIs want them.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{map_de, typed, unsupported};
use crate::chat::{ChatMessage, ContentPart};
use crate::error::ProviderError;

/// An `image_url` content part: `{"image_url": {"url": …}}` or, as some clients send it,
/// `{"image_url": "…"}`.
#[derive(Deserialize)]
struct ImagePart {
    image_url: ImageUrl,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ImageUrl {
    Object { url: String },
    Bare(String),
}

/// The URL of an `image_url` content part.
pub fn image_url(part: &ContentPart, param: &str) -> Result<String, ProviderError> {
    let part: ImagePart = typed(map_de(&part.extra), param)
        .map_err(|_| unsupported(param, "an `image_url` part needs `image_url.url`"))?;
    Ok(match part.image_url {
        ImageUrl::Object { url } | ImageUrl::Bare(url) => url,
    })
}

/// What an OpenAI message carries beside its role and content.
#[derive(Default, Deserialize)]
pub struct MessageFields {
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Signed thinking an earlier Anthropic answer returned, to go back with this turn.
    #[serde(default)]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireCalled,
}

#[derive(Deserialize)]
struct WireCalled {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

/// A block of Anthropic thinking as an earlier answer gave it (`message.thinking_blocks`).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

impl ThinkingBlock {
    /// Whether Anthropic will accept it back: redacted, or thinking with its signature.
    pub fn is_signed(&self) -> bool {
        match self {
            ThinkingBlock::Thinking { signature, .. } => signature.as_deref().is_some_and(|s| !s.is_empty()),
            ThinkingBlock::RedactedThinking { .. } => true,
        }
    }
}

/// One tool call an assistant message made, with its arguments parsed.
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Map<String, Value>,
}

impl MessageFields {
    /// The fields of message `param` (`messages[i]`).
    pub fn of(m: &ChatMessage, param: &str) -> Result<Self, ProviderError> {
        typed(map_de(&m.extra), param)
    }

    /// The assistant's tool calls, arguments parsed (they must be a JSON object).
    pub fn tool_calls(&self, param: &str) -> Result<Vec<ToolCall>, ProviderError> {
        self.tool_calls
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, call)| {
                let args = call.function.arguments.as_deref().unwrap_or_default();
                let arguments = match serde_json::from_str::<Value>(args) {
                    _ if args.trim().is_empty() => Map::new(),
                    Ok(Value::Object(o)) => o,
                    _ => {
                        return Err(unsupported(
                            &format!("{param}.tool_calls[{j}].function.arguments"),
                            "tool call arguments must be a JSON object",
                        ))
                    }
                };
                Ok(ToolCall { id: call.id.clone(), name: call.function.name.clone(), arguments })
            })
            .collect()
    }

    /// The id a `tool` message answers.
    pub fn answered_call(&self, param: &str) -> Result<&str, ProviderError> {
        self.tool_call_id
            .as_deref()
            .ok_or_else(|| unsupported(&format!("{param}.tool_call_id"), "a tool message needs `tool_call_id`"))
    }
}

/// A conversation turn of a native API: a role and its pieces (Anthropic `content` blocks,
/// Gemini `parts`).
pub trait Turn: Sized {
    type Piece;
    fn role(&self) -> &str;
    fn pieces(&mut self) -> &mut Vec<Self::Piece>;
    fn new(role: &'static str, pieces: Vec<Self::Piece>) -> Self;
}

/// Appends a turn's pieces to the conversation, merging them into the last turn when it has the
/// same role (Anthropic and Gemini both want alternating turns); empty pieces add nothing.
pub fn push_turn<T: Turn>(turns: &mut Vec<T>, role: &'static str, pieces: Vec<T::Piece>) {
    if pieces.is_empty() {
        return;
    }
    match turns.last_mut().filter(|t| t.role() == role) {
        Some(last) => last.pieces().extend(pieces),
        None => turns.push(T::new(role, pieces)),
    }
}
