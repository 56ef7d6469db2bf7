//! `POST /v1/embeddings`, `POST /v1/images/generations` and `POST /api/v1/image`: the same
//! authentication, limits, holds and routing as chat, in OpenAI's response shapes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use layers_core::media::{EmbeddingRequest, ImageRequest, MediaReply};

use crate::api::chat::reply_headers;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, CallInfo};
use crate::state::AppState;

pub async fn embeddings(
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let ctx = call.context(principal, "embeddings");
    Ok(render(state.core.chat.embed(&ctx, request).await?))
}

pub async fn images(
    State(state): State<AppState>,
    call: CallInfo,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<ImageRequest>,
) -> Result<Response, ApiError> {
    let ctx = call.context(principal, "images");
    Ok(render(state.core.chat.image(&ctx, request).await?))
}

fn render(reply: MediaReply) -> Response {
    let mut resp = (StatusCode::OK, reply.body).into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply_headers(&mut resp, &reply.provider, reply.credits);
    resp
}
