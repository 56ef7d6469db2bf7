//! The Messages API request body as types (https://docs.anthropic.com/en/api/messages).
//! Invariant: every field the gateway sends is a typed field here, so a renamed one is a compile
//! error; the client's `anthropic` option object (already cleared of the fields the gateway
//! decides) is laid over them last, so an explicit provider field wins.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ProviderError;
use crate::translate;

#[derive(Debug, Default, Serialize)]
pub(super) struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<Block>,
    pub messages: Vec<Turn>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<translate::Thinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Fields of the client's `anthropic` option object.
    #[serde(skip)]
    pub options: Map<String, Value>,
}

impl MessagesRequest {
    /// The JSON body, option-object fields laid over the gateway's.
    pub fn encode(&self) -> Result<Vec<u8>, ProviderError> {
        let lay =
            (!self.options.is_empty()).then_some(|body: &mut Map<String, Value>| body.extend(self.options.clone()));
        translate::encode_laid_over(self, lay)
    }
}

/// One turn of the conversation: `user` or `assistant`, alternating.
#[derive(Debug, Serialize)]
pub(super) struct Turn {
    pub role: &'static str,
    pub content: Vec<Block>,
}

impl translate::Turn for Turn {
    type Piece = Block;

    fn role(&self) -> &str {
        self.role
    }

    fn pieces(&mut self) -> &mut Vec<Block> {
        &mut self.content
    }

    fn new(role: &'static str, content: Vec<Block>) -> Self {
        Turn { role, content }
    }
}

/// A content block, optionally marked as the end of a cached prefix.
#[derive(Debug, Serialize)]
pub(super) struct Block {
    #[serde(flatten)]
    pub kind: BlockKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

impl From<BlockKind> for Block {
    fn from(kind: BlockKind) -> Self {
        Block { kind, cache_control: None }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum BlockKind {
    Text { text: String },
    Image { source: ImageSource },
    ToolUse { id: String, name: String, input: Map<String, Value> },
    ToolResult { tool_use_id: String, content: Vec<Block> },
    Thinking { thinking: String, signature: Option<String> },
    RedactedThinking { data: String },
}

/// `{"type": "ephemeral"}`: Anthropic's prompt-caching mark.
#[derive(Debug, Serialize)]
pub(super) struct CacheControl {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl CacheControl {
    pub const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ImageSource {
    Url { url: String },
    Base64 { media_type: String, data: String },
}

#[derive(Debug, Serialize)]
pub(super) struct Tool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Debug, Serialize)]
pub(super) struct ToolChoice {
    #[serde(flatten)]
    pub kind: ChoiceKind,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_parallel_tool_use: bool,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ChoiceKind {
    Auto,
    None,
    Any,
    Tool { name: String },
}

#[derive(Debug, Serialize)]
pub(super) struct Metadata {
    pub user_id: String,
}
