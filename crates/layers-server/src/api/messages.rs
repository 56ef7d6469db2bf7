//! `POST /v1/messages`: the Anthropic Messages API on any route. The core translates and runs
//! it (`ChatService::messages`); this handler only renders.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use layers_core::messages_dialect::MessagesBody;
use serde_json::Value;

use crate::api::chat::{json_response, reply_headers, sse_response};
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, CallInfo};
use crate::state::AppState;

pub async fn messages(
    headers: http::HeaderMap,
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let ctx = call.context(principal, "messages");
    let reply = state.core.chat.messages(&ctx, &body, beta).await?;
    let mut resp = match reply.body {
        MessagesBody::Json(bytes) => json_response(bytes),
        MessagesBody::Stream(events) => sse_response(Body::from_stream(events)),
    };
    reply_headers(&mut resp, &reply.provider, reply.credits);
    Ok(resp)
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<Value>, ApiError> {
    let ctx = call.context(principal, "count_tokens");
    let tokens = state.core.chat.count_message_tokens(&ctx, &body)?;
    Ok(axum::Json(serde_json::json!({"input_tokens": tokens})))
}

/// Any other path under `/v1/messages` (batches, files…): a 404 in Anthropic's shape.
pub async fn not_offered() -> ApiError {
    ApiError::NotFound {
        message: "This Messages API endpoint is not offered by this gateway".into(),
        code: layers_core::codes::ErrorCode::NotFound,
    }
}
