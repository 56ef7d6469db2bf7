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

/// `anthropic-beta` values are passed on to Anthropic routes when they look like feature names;
/// `oauth-…` is left out (Layers calls Anthropic with the operator's key, not the client's
/// login).
fn beta_features(header: Option<&str>) -> Option<String> {
    let header =
        header.filter(|v| v.len() <= 512 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_,. ".contains(&b)))?;
    let kept: Vec<&str> =
        header.split(',').map(str::trim).filter(|b| !b.is_empty() && !b.starts_with("oauth-")).collect();
    (!kept.is_empty()).then(|| kept.join(","))
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
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
        let anthropic_route = self.served_by_anthropic_only(ctx, model);
        let mut chat = request::to_chat(body, anthropic_route).map_err(|e| ChatError::Invalid {
            message: e.message,
            param: Some(e.param),
            code: ErrorCode::InvalidRequest,
        })?;
        // Agents send the largest `max_tokens` Anthropic accepts; past this model's output cap
        // it means "as much as it can write", not a mistake.
        if let Some(cap) = self.output_cap_of(ctx, model) {
            if chat.max_tokens.is_some_and(|m| m > cap) {
                chat.max_tokens = Some(cap);
            }
        }
        // Betas mean something to Anthropic only.
        chat.anthropic_beta = if anthropic_route { beta_features(anthropic_beta) } else { None };
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

impl ChatService {
    /// `POST /v1/messages/count_tokens`: the prompt's tokens as the gateway counts them (what
    /// the sandbox reports as `input_tokens` for the same request; an estimate for a provider's
    /// own tokenizer), without calling a provider or billing.
    pub fn count_message_tokens(&self, ctx: &CallContext, body: &Value) -> Result<u32, ChatError> {
        let mut body = body.clone();
        if let Value::Object(m) = &mut body {
            // count_tokens takes a Messages request without `max_tokens`.
            m.entry("max_tokens").or_insert(serde_json::json!(1));
        }
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        let chat = request::to_chat(&body, self.served_by_anthropic_only(ctx, &model)).map_err(|e| {
            ChatError::Invalid { message: e.message, param: Some(e.param), code: ErrorCode::InvalidRequest }
        })?;
        self.resolve_kind(&model, layers_domain::ModelKind::Chat, ctx.principal.env == layers_domain::KeyEnv::Live)?;
        Ok(layers_providers::sandbox::prompt_tokens(&chat))
    }

    /// Whether every route the request would take is Anthropic's (so Anthropic's own fields
    /// reach it unchanged). Test keys go to the sandbox unless the operator lets them out.
    fn served_by_anthropic_only(&self, ctx: &CallContext, model: &str) -> bool {
        let billed = ctx.principal.env == layers_domain::KeyEnv::Live;
        if !billed && !self.test_keys.real_routes {
            return false;
        }
        let Ok(entry) = self.resolve_kind(model, layers_domain::ModelKind::Chat, billed) else { return false };
        !entry.routes.is_empty()
            && entry.routes.iter().all(|r| {
                self.providers.get(&r.provider).is_some_and(|a| a.kind() == layers_providers::ProviderKind::Anthropic)
            })
    }

    /// The model's output cap, when the model is known.
    fn output_cap_of(&self, ctx: &CallContext, model: &str) -> Option<u32> {
        let billed = ctx.principal.env == layers_domain::KeyEnv::Live;
        let entry = self.resolve_kind(model, layers_domain::ModelKind::Chat, billed).ok()?;
        (entry.spec.max_output_tokens > 0).then_some(entry.spec.max_output_tokens)
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
