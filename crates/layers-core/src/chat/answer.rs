//! The OpenAI chat answer as the gateway writes it (a completion body or a stream chunk), read
//! as types by the dialects that translate it (Messages, Responses). Invariant: a field the translation reads is a typed field
//! here, so a renamed one is a compile error; fields it does not read are ignored.

use layers_providers::translate::ThinkingBlock;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Completion {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// A choice of a completion (`message`) or of a chunk (`delta`): the same fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Choice {
    #[serde(default, alias = "delta")]
    pub message: AnswerMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnswerMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// Anthropic's own thinking blocks, signatures included (kept as sent: they go back as is).
    #[serde(default)]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<AnswerToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnswerToolCall {
    /// Which call a stream delta continues.
    #[serde(default)]
    pub index: u64,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Called,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Called {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// One chunk of the chat stream: choices and usage, or an error event.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    #[serde(default)]
    pub error: Option<ChunkError>,
    /// The gateway's `layers` object (the exact charge), on the usage chunk.
    #[serde(default)]
    pub layers: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChunkError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// OpenAI usage as the gateway writes it (`prompt_tokens` includes cached and written tokens).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub cache_creation_tokens: u64,
}
