//! `POST /v1/embeddings`, `POST /v1/images/generations` and `POST /api/v1/image`: the same
//! authentication, limits, holds and routing as chat, in OpenAI's response shapes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{HeaderValue, StatusCode};
use layers_core::chat::CallContext;
use layers_core::media::{EmbeddingRequest, ImageRequest, MediaReply};
use layers_domain::RequestId;

use crate::api::chat::reply_headers;
use crate::error::ApiError;
use crate::extract::{ApiJson, Attribution, Authenticated};
use crate::middleware::context::Started;
use crate::state::AppState;

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(Started(started)): Extension<Started>,
    Authenticated(principal): Authenticated,
    Attribution(app): Attribution,
    ApiJson(request): ApiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let ctx = CallContext { principal, request_id, started, endpoint: "embeddings", app };
    Ok(render(state.core.chat.embed(&ctx, request).await?))
}

pub async fn images(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(Started(started)): Extension<Started>,
    Authenticated(principal): Authenticated,
    Attribution(app): Attribution,
    ApiJson(request): ApiJson<ImageRequest>,
) -> Result<Response, ApiError> {
    let ctx = CallContext { principal, request_id, started, endpoint: "images", app };
    Ok(render(state.core.chat.image(&ctx, request).await?))
}

fn render(reply: MediaReply) -> Response {
    let mut resp = (StatusCode::OK, reply.body).into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply_headers(&mut resp, &reply.provider, reply.credits);
    resp
}
