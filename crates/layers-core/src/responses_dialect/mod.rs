//! The OpenAI Responses API as a dialect clients speak (`POST /v1/responses`), stateless as
//! OpenRouter's is: requests are translated into the chat shape the gateway runs on any route
//! (same limits, holds, metering and routing), and answers back into Response objects and the
//! Responses event stream. Invariant: what the openai SDKs receive has every field their types
//! require, whichever provider answered; what needs stored state is a 400 naming the field.
//!
//! Components: [`inbound`] (the request as types), [`request`] (→ chat request), [`response`]
//! (completion → Response object), [`stream`] (chat SSE → Responses events, incrementally), and
//! `ChatService::responses`, the whole exchange for the HTTP handler.

mod inbound;
pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use serde_json::Value;

use crate::chat::translated::TranslatedStream;
use crate::chat::{CallContext, ChatError, ChatService, Credits, ReplyBody};
use crate::codes::ErrorCode;

/// A `/v1/responses` answer, already in the Responses shapes.
pub struct ResponsesReply {
    pub provider: String,
    pub credits: Credits,
    pub body: ResponsesBody,
}

pub enum ResponsesBody {
    /// A Response object.
    Json(Bytes),
    /// The Responses event stream, translated from the chat stream as it arrives.
    Stream(Box<ResponsesStream>),
}

/// The chat stream of a request, as Responses events.
pub type ResponsesStream = TranslatedStream<stream::ResponsesSse>;

impl ChatService {
    /// A Responses API request, run through the chat pipeline and answered in its shapes.
    pub async fn responses(&self, ctx: &CallContext, body: &Value) -> Result<ResponsesReply, ChatError> {
        let translated = request::to_chat(body).map_err(|e| ChatError::Invalid {
            message: e.message,
            param: Some(e.param),
            code: ErrorCode::InvalidRequest,
        })?;
        let shell = response::Shell::new(ctx.request_id.as_str(), &translated.chat.model, translated.echo);
        let reply = self.chat(ctx, translated.chat).await?;
        let body = match reply.body {
            ReplyBody::Json(bytes) => {
                let completion: Value =
                    serde_json::from_slice(&bytes).map_err(|_| ChatError::Internal("a completion that is not JSON"))?;
                ResponsesBody::Json(Bytes::from(response::to_response(&completion, &shell).to_string()))
            }
            ReplyBody::Stream(chat) => {
                ResponsesBody::Stream(Box::new(TranslatedStream::new(chat, stream::ResponsesSse::new(shell))))
            }
        };
        Ok(ResponsesReply { provider: reply.provider, credits: reply.credits, body })
    }
}
