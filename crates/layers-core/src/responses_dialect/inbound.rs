//! The OpenAI Responses request as clients send it, as types
//! (https://platform.openai.com/docs/api-reference/responses/create). Invariant: a field the
//! translation reads is a typed field here, so a renamed one is a compile error; fields the
//! Responses API does not define are collected (`extra`) and go on to the chat pipeline, which
//! checks them as it checks a chat request's (`seed`, `cache`, the provider option objects…).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::messages_dialect::inbound::TextOr;

#[derive(Debug, Deserialize)]
pub(super) struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<TextOr<Value>>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub reasoning: Option<Reasoning>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub conversation: Option<Value>,
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    /// Extra output to include (`reasoning.encrypted_content`, logprobs…): accepted, and what
    /// a stateless gateway has of it is what it returns.
    #[serde(default)]
    #[allow(dead_code)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub truncation: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub max_tool_calls: Option<u32>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    /// `include_obfuscation` and the like: options of the event stream's transport.
    #[serde(default)]
    #[allow(dead_code)]
    pub stream_options: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool definition; only `function` tools have a meaning on every route.
#[derive(Debug, Deserialize)]
pub(super) struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `text`: the output's format and verbosity.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TextConfig {
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub verbosity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Format {
    Text,
    JsonObject,
    JsonSchema {
        #[serde(default)]
        name: Option<String>,
        schema: Value,
        #[serde(default)]
        strict: Option<bool>,
        #[serde(default)]
        description: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Reasoning {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub summary: Option<String>,
}

/// An input message (`type: "message"`, or no type).
#[derive(Debug, Deserialize)]
pub(super) struct InputMessage {
    pub role: MessageRole,
    pub content: TextOr<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum MessageRole {
    User,
    System,
    Developer,
    Assistant,
}

/// A content part of an input message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Part {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    InputFile {
        #[serde(default)]
        file_data: Option<String>,
        #[serde(default)]
        filename: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        file_url: Option<String>,
    },
    InputAudio {},
}

/// A function call the model made earlier in the conversation.
#[derive(Debug, Deserialize)]
pub(super) struct FunctionCall {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
}

/// The result the client sends back for a function call.
#[derive(Debug, Deserialize)]
pub(super) struct FunctionCallOutput {
    pub call_id: String,
    pub output: TextOr<Part>,
}
