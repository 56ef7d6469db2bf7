//! `POST /v1/messages`: the Anthropic Messages API on any route. The core translates and runs
//! it (`ChatService::messages`); this handler only renders.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{HeaderValue, StatusCode};
use layers_core::chat::CallContext;
use layers_core::messages_dialect::MessagesBody;
use layers_domain::RequestId;
use serde_json::Value;

use crate::api::chat::reply_headers;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated};
use crate::middleware::context::Started;
use crate::state::AppState;

pub async fn messages(
    headers: http::HeaderMap,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(Started(started)): Extension<Started>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let ctx = CallContext { principal, request_id, started, endpoint: "messages" };
    let reply = state.core.chat.messages(&ctx, &body, beta).await?;
    let mut resp = match reply.body {
        MessagesBody::Json(bytes) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        MessagesBody::Stream(events) => {
            let mut r = Response::new(Body::from_stream(events));
            let h = r.headers_mut();
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
            h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            r
        }
    };
    reply_headers(&mut resp, &reply.provider, reply.credits);
    Ok(resp)
}
