//! The bodies of the public API as types, for the OpenAPI document (`GET /openapi.json`):
//! what each endpoint accepts and answers, with the fields clients rely on required. The test
//! suite checks every JSON response it receives against them (scripts/openapi-check), so a
//! field renamed in a handler fails the run. Objects allow more fields than listed: providers
//! add their own, and clients ignore what they do not know.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// Every error of the OpenAI-shaped endpoints.
#[derive(ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorObject,
    /// The request's id (`x-request-id`).
    pub request_id: String,
}

#[derive(ToSchema)]
pub struct ErrorObject {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, …
    #[schema(rename = "type")]
    pub kind: String,
    pub code: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
}

/// Every error under `/v1/messages`: Anthropic's envelope.
#[derive(ToSchema)]
pub struct AnthropicErrorResponse {
    /// Always `error`.
    #[schema(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorObject,
    pub request_id: Option<String>,
}

#[derive(ToSchema)]
pub struct AnthropicErrorObject {
    #[schema(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// A Chat Completions request: OpenAI's fields, Layers' (`cache`, `thinking`, option objects
/// `anthropic`/`openai`/`google`) and OpenRouter's (`models`, `provider`, `usage`).
#[derive(ToSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub stream: Option<bool>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub n: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// OpenRouter: models to fall back to, in order.
    pub models: Option<Vec<String>>,
    /// OpenRouter: route preferences (`order`, `only`, `ignore`, `allow_fallbacks`, `sort`, `max_price`).
    #[schema(value_type = Option<Object>)]
    pub provider: Option<Value>,
}

#[derive(ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or content parts.
    pub content: Option<Value>,
}

#[derive(ToSchema)]
pub struct ChatCompletion {
    /// `gen-<request id>`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    pub created: i64,
    pub model: String,
    /// The provider that answered.
    pub provider: String,
    pub choices: Vec<ChatChoice>,
    pub usage: ChatUsage,
    pub layers: LayersObject,
}

#[derive(ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
}

#[derive(ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    pub content: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Value>,
}

/// One event of a streamed completion (`data: {…}`), the stream ending with `data: [DONE]`.
#[derive(ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    pub created: i64,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub choices: Value,
    pub usage: Option<ChatUsage>,
}

#[derive(ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
    /// OpenRouter's usage accounting: the exact debit in US$.
    pub cost: f64,
    pub is_byok: bool,
}

#[derive(ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

#[derive(ToSchema)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
}

/// Layers' own object on an answer: the exact charge.
#[derive(ToSchema)]
pub struct LayersObject {
    /// The debit in credits, an exact decimal string.
    pub credits_used: String,
    pub credits_used_micros: i64,
    pub latency_ms: u64,
    pub reasoning: Option<String>,
}

/// A Responses API request (stateless).
#[derive(ToSchema)]
pub struct ResponsesRequest {
    pub model: String,
    /// A string, or input items (messages, `function_call`, `function_call_output`, `reasoning`).
    pub input: Value,
    pub instructions: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    pub max_output_tokens: Option<u32>,
    pub stream: Option<bool>,
    /// Only `false`: Layers does not store responses.
    pub store: Option<bool>,
}

/// A Response object; streamed, the typed `response.*` events, `response.completed` carrying it.
#[derive(ToSchema)]
pub struct ResponseObject {
    /// `resp_<request id>`.
    pub id: String,
    /// `response`.
    pub object: String,
    pub created_at: i64,
    /// `completed`, `incomplete` or `failed`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub incomplete_details: Option<Value>,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub output: Value,
    pub usage: Option<ResponseUsage>,
    pub parallel_tool_calls: bool,
    pub tool_choice: Value,
    #[schema(value_type = Vec<Object>)]
    pub tools: Value,
    pub store: bool,
}

#[derive(ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    #[schema(value_type = Object)]
    pub input_tokens_details: Value,
    pub output_tokens: u32,
    #[schema(value_type = Object)]
    pub output_tokens_details: Value,
    pub total_tokens: u32,
}

/// An Anthropic Messages request.
#[derive(ToSchema)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    #[schema(value_type = Vec<Object>)]
    pub messages: Value,
    pub system: Option<Value>,
    pub stream: Option<bool>,
}

/// An Anthropic message; streamed, `message_start` … `message_stop`.
#[derive(ToSchema)]
pub struct AnthropicMessage {
    pub id: String,
    /// `message`.
    #[schema(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub content: Value,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: AnthropicUsage,
}

#[derive(ToSchema)]
pub struct AnthropicUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

#[derive(ToSchema)]
pub struct CountTokensRequest {
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub messages: Value,
}

#[derive(ToSchema)]
pub struct TokenCount {
    pub input_tokens: u32,
}

#[derive(ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// A string, strings, or token arrays.
    pub input: Value,
    /// `float` (default) or `base64`.
    pub encoding_format: Option<String>,
    pub dimensions: Option<u32>,
}

#[derive(ToSchema)]
pub struct EmbeddingList {
    /// `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: Value,
}

#[derive(ToSchema)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    /// Floats, or base64 of little-endian f32s.
    pub embedding: Value,
}

#[derive(ToSchema)]
pub struct ImagesRequest {
    pub model: String,
    pub prompt: String,
    pub n: Option<u32>,
    pub size: Option<String>,
    pub quality: Option<String>,
}

#[derive(ToSchema)]
pub struct ImagesResponse {
    pub created: i64,
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

#[derive(ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    pub data: Vec<Model>,
}

/// An OpenAI `Model` that is also an OpenRouter model object.
#[derive(ToSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
    pub name: String,
    pub canonical_slug: String,
    pub context_length: u32,
    #[schema(value_type = Object)]
    pub architecture: Value,
    /// US$ per token (per image), exact decimal strings.
    #[schema(value_type = Object)]
    pub pricing: Value,
    #[schema(value_type = Object)]
    pub top_provider: Value,
    pub supported_parameters: Vec<String>,
}

#[derive(ToSchema)]
pub struct PriceList {
    pub object: String,
    pub currency: String,
    pub usd_per_credit: String,
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

#[derive(ToSchema)]
pub struct Balance {
    /// `balance`.
    pub object: String,
    /// Exact decimal credits.
    pub credits: String,
    pub usd: String,
    pub tier: String,
    /// `live` or `test`.
    pub key_environment: String,
}

#[derive(ToSchema)]
pub struct UsagePage {
    pub object: String,
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct Generation {
    pub data: GenerationData,
}

#[derive(ToSchema)]
pub struct GenerationData {
    pub id: String,
    pub model: String,
    pub provider_name: String,
    pub status: u16,
    pub streamed: bool,
    pub tokens_prompt: u32,
    pub tokens_completion: u32,
    /// The debit in credits, exact decimal.
    pub credits_charged: String,
    /// The same debit in US$ (OpenRouter's number).
    pub total_cost: f64,
    pub latency: i64,
}

#[derive(ToSchema)]
pub struct KeyInfo {
    pub data: KeyData,
}

#[derive(ToSchema)]
pub struct KeyData {
    pub label: String,
    /// Spend limit in US$.
    pub limit: Option<f64>,
    pub limit_remaining: Option<f64>,
    pub limit_reset: Option<String>,
    /// Lifetime spend in US$.
    pub usage: f64,
    pub is_free_tier: bool,
    pub is_test: bool,
    #[schema(value_type = Object)]
    pub rate_limit: Value,
}

#[derive(ToSchema)]
pub struct Health {
    /// `ok`, or (readiness) `ready`, `degraded`, `unavailable`.
    pub status: String,
}
