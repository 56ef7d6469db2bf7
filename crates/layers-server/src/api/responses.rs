//! `POST /v1/responses`: the OpenAI Responses API on any route. The core translates and runs it
//! (`ChatService::responses`); this handler only renders.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use layers_core::responses_dialect::ResponsesBody;
use serde_json::Value;

use crate::api::chat::{json_response, reply_headers, sse_response};
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, CallInfo};
use crate::state::AppState;

pub async fn responses(
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let ctx = call.context(principal, "responses");
    let reply = state.core.chat.responses(&ctx, &body).await?;
    let mut resp = match reply.body {
        ResponsesBody::Json(bytes) => json_response(bytes),
        ResponsesBody::Stream(events) => sse_response(Body::from_stream(events)),
    };
    reply_headers(&mut resp, &reply.provider, reply.credits);
    Ok(resp)
}
