//! The Anthropic Messages request as clients send it, as types
//! (https://docs.anthropic.com/en/api/messages). Invariant: a field the translation reads is a
//! typed field here, so a renamed one is a compile error; fields this gateway does not know are
//! collected (`other`) to be refused by name, never dropped.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
pub(super) struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Option<TextOr<SystemBlock>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub thinking: Option<Value>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// `effort` (and what else Anthropic adds there).
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// Structured outputs: `{"type": "json_schema", "schema": {…}}`.
    #[serde(default)]
    pub output_format: Option<OutputFormat>,
    /// Server-side context editing (clearing old tool results): Anthropic's alone.
    #[serde(default)]
    pub context_management: Option<Value>,
    /// Everything else the client sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A string, or a list of blocks (`system`, `content`, a tool result's `content`). Read by hand
/// rather than as an untagged enum so that an error inside a block is named by its index.
#[derive(Debug)]
pub(crate) enum TextOr<T> {
    Text(String),
    Blocks(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Either<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Either<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of blocks")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(s.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(TextOr::Blocks(blocks))
            }
        }
        de.deserialize_any(Either(PhantomData))
    }
}

/// A system block: text only.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum SystemBlock {
    Text {
        text: String,
        #[serde(default)]
        cache_control: Option<IgnoredAny>,
    },
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct OutputConfig {
    #[serde(default)]
    pub effort: Option<String>,
    /// Structured outputs (where `output_format` moved): `{"type": "json_schema", "schema"}`.
    #[serde(default)]
    pub format: Option<OutputFormat>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutputFormat {
    JsonSchema { schema: Value },
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A tool: a custom tool (`type` absent or `custom`), or a server tool (refused here).
#[derive(Debug, Deserialize)]
pub(super) struct Tool {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub cache_control: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolChoice {
    #[serde(flatten)]
    pub kind: ChoiceKind,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ChoiceKind {
    Auto,
    Any,
    None,
    Tool { name: String },
}

#[derive(Debug, Deserialize)]
pub(super) struct Message {
    pub role: Role,
    pub content: TextOr<Block>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Role {
    User,
    Assistant,
}

/// A content block; which kinds a role may send is the translation's to check.
#[derive(Debug, Deserialize)]
pub(super) struct Block {
    #[serde(flatten)]
    pub kind: BlockKind,
    #[serde(default)]
    pub cache_control: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum BlockKind {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextOr<ResultBlock>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    /// A document (a PDF as base64, or plain text).
    Document {
        source: DocumentSource,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum DocumentSource {
    Base64 {
        #[serde(default)]
        media_type: Option<String>,
        data: String,
    },
    Text {
        data: String,
    },
    Url {},
    Content {},
    File {},
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ImageSource {
    Base64 {
        #[serde(default)]
        media_type: Option<String>,
        data: String,
    },
    Url {
        url: String,
    },
}

/// A block of a tool result: text, or an image or document the tool returned (the chat shape
/// carries those beside the result, in the user's turn).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ResultBlock {
    Text { text: String },
    Image { source: ImageSource },
    Document { source: DocumentSource },
}

impl BlockKind {
    /// The block's `type`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            BlockKind::Text { .. } => "text",
            BlockKind::Image { .. } => "image",
            BlockKind::ToolUse { .. } => "tool_use",
            BlockKind::ToolResult { .. } => "tool_result",
            BlockKind::Thinking { .. } => "thinking",
            BlockKind::RedactedThinking { .. } => "redacted_thinking",
            BlockKind::Document { .. } => "document",
        }
    }
}
