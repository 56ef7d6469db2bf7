//! `POST /v1/chat/completions` and `POST /api/v1/chat` (one handler).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use layers_core::chat::{ChatReply, Credits, ReplyBody};
use layers_providers::ChatRequest;

use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, CallInfo};
use crate::state::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let ctx = call.context(principal, "chat");
    let reply = state.core.chat.chat(&ctx, request).await?;
    Ok(render(reply))
}

fn render(reply: ChatReply) -> Response {
    let mut resp = match reply.body {
        ReplyBody::Json(bytes) => json_response(bytes),
        ReplyBody::Stream(stream) => sse_response(Body::from_stream(stream)),
    };
    reply_headers(&mut resp, &reply.provider, reply.credits);
    resp
}

/// A 200 with a JSON body.
pub(crate) fn json_response(bytes: bytes::Bytes) -> Response {
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A 200 event stream, unbuffered by proxies on the way.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// `x-layers-provider` and the credit headers of a reply.
pub(crate) fn reply_headers(resp: &mut Response, provider: &str, c: Credits) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(provider) {
        h.insert("x-layers-provider", v);
    }
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    if let Some(charged) = c.charged {
        put("x-layers-credits-charged", charged.to_string());
    }
    if let Some(remaining) = c.remaining {
        put("x-layers-credits-remaining", remaining.to_string());
    }
    if let Some(n) = c.max_tokens_capped {
        put("x-layers-max-tokens-capped", n.to_string());
    }
}
