//! The Anthropic Messages API as a dialect clients speak (`POST /v1/messages`), not an upstream:
//! requests are translated into the OpenAI chat shape the gateway runs on any route, and answers
//! back into Anthropic's message objects and SSE events. Invariant: what the Anthropic SDK
//! receives has every field its types require, whichever provider answered.
//!
//! Components: [`request`] (Messages request → chat request), [`response`] (completion →
//! message), [`stream`] (OpenAI SSE → Anthropic SSE, incrementally), and
//! `ChatService::messages`, the whole exchange for the HTTP handler.

pub(crate) mod inbound;
pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use serde_json::Value;

use crate::chat::translated::TranslatedStream;
use crate::chat::{CallContext, ChatError, ChatService, Credits, ReplyBody};
use crate::codes::ErrorCode;

/// A `/v1/messages` answer, already in Anthropic's shapes.
pub struct MessagesReply {
    pub provider: String,
    pub credits: Credits,
    pub body: MessagesBody,
}

pub enum MessagesBody {
    /// A message object.
    Json(Bytes),
    /// Anthropic's SSE events, translated from the chat stream as it arrives.
    Stream(Box<MessagesStream>),
}

/// The chat stream of a request, as Anthropic's events.
pub type MessagesStream = TranslatedStream<stream::MessagesSse>;

/// `anthropic-beta` values are passed on to Anthropic routes when they look like feature names.
fn beta_features(header: Option<&str>) -> Option<String> {
    header
        .filter(|v| v.len() <= 512 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_,. ".contains(&b)))
        .map(str::to_owned)
}

impl ChatService {
    /// A Messages API request, run through the chat pipeline (limits, holds, metering,
    /// routing) and answered in Anthropic's shapes.
    pub async fn messages(
        &self,
        ctx: &CallContext,
        body: &Value,
        anthropic_beta: Option<&str>,
    ) -> Result<MessagesReply, ChatError> {
        let mut chat = request::to_chat(body).map_err(|e| ChatError::Invalid {
            message: e.message,
            param: Some(e.param),
            code: ErrorCode::InvalidRequest,
        })?;
        chat.anthropic_beta = beta_features(anthropic_beta);
        let model = chat.model.clone();
        let reply = self.chat(ctx, chat).await?;
        let body = match reply.body {
            ReplyBody::Json(bytes) => {
                let completion: Value =
                    serde_json::from_slice(&bytes).map_err(|_| ChatError::Internal("a completion that is not JSON"))?;
                let message = response::to_message(&completion, ctx.request_id.as_str());
                MessagesBody::Json(Bytes::from(message.to_string()))
            }
            ReplyBody::Stream(chat) => MessagesBody::Stream(Box::new(TranslatedStream::new(
                chat,
                stream::MessagesSse::new(ctx.request_id.as_str(), &model),
            ))),
        };
        Ok(MessagesReply { provider: reply.provider, credits: reply.credits, body })
    }
}

/// Anthropic's stop reason for an OpenAI finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage object for OpenAI usage (`prompt_tokens` includes cached tokens there).
fn usage(openai: Option<crate::chat::answer::ChatUsage>) -> serde_json::Value {
    let u = openai.unwrap_or_default();
    let details = u.prompt_tokens_details.unwrap_or_default();
    let (cached, written) = (details.cached_tokens, details.cache_creation_tokens);
    serde_json::json!({
        "input_tokens": u.prompt_tokens.saturating_sub(cached).saturating_sub(written),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    })
}
