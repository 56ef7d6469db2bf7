//! `POST /v1/messages`: the Anthropic Messages API on any route. The request is translated into
//! the chat shape and runs through the same pipeline as `/v1/chat/completions` (limits, holds,
//! metering, routing); the answer is translated back, streamed event by event.

use layers_core::codes::ErrorCode;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use layers_core::chat::{CallContext, ReplyBody};
use layers_domain::RequestId;
use layers_providers::messages_api::{request, response, stream::MessagesSse};
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
    let mut chat = request::to_chat(&body).map_err(|e| ApiError::Invalid {
        message: e.message,
        param: Some(e.param),
        code: ErrorCode::InvalidRequest,
    })?;
    // Beta features (longer context, cache lifetimes…) are Anthropic's: passed on to its routes.
    chat.anthropic_beta = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 512 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_,. ".contains(&b)))
        .map(str::to_owned);
    let model = chat.model.clone();
    let ctx = CallContext { principal, request_id: request_id.clone(), started, endpoint: "messages" };
    let reply = state.core.chat.chat(&ctx, chat).await?;
    let mut resp = match reply.body {
        ReplyBody::Json(ref bytes) => {
            let completion: Value = serde_json::from_slice(bytes)
                .map_err(|e| ApiError::Internal { detail: crate::error::error_chain(&e) })?;
            let message = response::to_message(&completion, request_id.as_str());
            let mut r = (StatusCode::OK, message.to_string()).into_response();
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        ReplyBody::Stream(_) => Response::new(Body::empty()),
    };
    reply_headers(&mut resp, &reply.provider, reply.credits);
    if let ReplyBody::Stream(chat_stream) = reply.body {
        let mut translator = MessagesSse::new(request_id.as_str(), &model);
        let events = chat_stream.map(move |chunk| {
            let Ok(bytes) = chunk;
            Ok::<_, Infallible>(Bytes::from(translator.push(&bytes)))
        });
        *resp.body_mut() = Body::from_stream(events);
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    Ok(resp)
}
