//! The `generateContent` request body as types
//! (https://ai.google.dev/api/generate-content#request-body). Invariant: every field the gateway
//! sends is a typed field here, so a renamed one is a compile error; the client's `google`
//! option object (already cleared of the fields the gateway decides) is laid over them last, its
//! `generationConfig` over the config, so an explicit provider field wins.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ProviderError;
use crate::translate;

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<SystemInstruction>,
    pub contents: Vec<Content>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "GenerationConfig::is_unset")]
    pub generation_config: GenerationConfig,
    /// Fields of the client's `google` option object, beside `generationConfig`.
    #[serde(skip)]
    pub options: Map<String, Value>,
}

impl GenerateContentRequest {
    /// The JSON body, option-object fields laid over the gateway's.
    pub fn encode(&self) -> Result<Vec<u8>, ProviderError> {
        let config_options = &self.generation_config.options;
        let lay =
            (!self.options.is_empty() || !config_options.is_empty()).then_some(|body: &mut Map<String, Value>| {
                body.extend(self.options.clone());
                if !config_options.is_empty() {
                    let config = body.entry("generationConfig").or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(config) = config {
                        config.extend(config_options.clone());
                    }
                }
            });
        translate::encode_laid_over(self, lay)
    }
}

#[derive(Debug, Serialize)]
pub(super) struct SystemInstruction {
    pub parts: Vec<Part>,
}

/// One turn: `user` or `model`, alternating.
#[derive(Debug, Serialize)]
pub(super) struct Content {
    pub role: &'static str,
    pub parts: Vec<Part>,
}

impl translate::Turn for Content {
    type Piece = Part;

    fn role(&self) -> &str {
        self.role
    }

    fn pieces(&mut self) -> &mut Vec<Part> {
        &mut self.parts
    }

    fn new(role: &'static str, parts: Vec<Part>) -> Self {
        Content { role, parts }
    }
}

/// A part: exactly one of its kinds, as `{"text": …}`, `{"inlineData": …}`, ….
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Part {
    Text(String),
    InlineData(Blob),
    FunctionCall(FunctionCall),
    FunctionResponse(FunctionResponse),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Serialize)]
pub(super) struct FunctionCall {
    pub name: String,
    pub args: Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub(super) struct FunctionResponse {
    pub name: String,
    pub response: Map<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Tool {
    pub function_declarations: Vec<FunctionDeclaration>,
}

#[derive(Debug, Serialize)]
pub(super) struct FunctionDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToolConfig {
    pub function_calling_config: FunctionCallingConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FunctionCallingConfig {
    /// `AUTO`, `NONE` or `ANY`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
    /// The `generationConfig` of the client's `google` option object.
    #[serde(skip)]
    pub options: Map<String, Value>,
}

impl GenerationConfig {
    /// Nothing to send (Gemini's defaults apply).
    fn is_unset(&self) -> bool {
        self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.seed.is_none()
            && self.stop_sequences.is_empty()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ThinkingConfig {
    pub thinking_budget: u32,
    pub include_thoughts: bool,
}
