//! The router: paths mapped to handlers, and the cross-cutting layers, read top to bottom.

use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::HeaderValue;
use layers_core::codes::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;

use crate::api::{
    account, chat, health, key, media, messages, metrics, models, openapi, responses, security_txt, stripe_webhook,
};
use crate::error::ApiError;
use crate::middleware::{anthropic_dialect, client_ip, context, cors, overload, rate_headers};
use crate::pages;
use crate::state::AppState;

pub fn build_router(state: AppState) -> Router {
    let recorder = state.recorder.clone();
    let router = routes(state);
    match recorder {
        // Outermost, so it sees exactly what the client receives.
        Some(r) => router.layer(from_fn_with_state(r, crate::middleware::record::record)),
        None => router,
    }
}

fn routes(state: AppState) -> Router {
    let data_plane = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/api/v1/chat", post(chat::chat_completions))
        // OpenRouter's base URL is `…/api/v1`: its clients switch by changing the host.
        .route("/api/v1/chat/completions", post(chat::chat_completions))
        .route("/api/v1/responses", post(responses::responses))
        .route("/api/v1/embeddings", post(media::embeddings))
        .route("/api/v1/models", get(models::list_models))
        .route("/api/v1/key", get(key::current_key))
        .route("/v1/models", get(models::list_models))
        .route("/v1/embeddings", post(media::embeddings))
        .route("/v1/images/generations", post(media::images))
        .route("/api/v1/image", post(media::images))
        .route("/api/v1/pricing", get(account::pricing))
        .route("/api/v1/balance", get(account::balance))
        .route("/api/v1/usage", get(account::usage))
        .route("/api/v1/generation", get(account::generation))
        .route("/v1/responses", post(responses::responses))
        // Every path under /v1/messages speaks Anthropic's dialect, its 404s and 405s included.
        .merge(
            Router::new()
                .route("/v1/messages", post(messages::messages).fallback(method_not_allowed))
                .route("/v1/messages/count_tokens", post(messages::count_tokens).fallback(method_not_allowed))
                .route("/v1/messages/{*rest}", axum::routing::any(messages::not_offered))
                .layer(from_fn(anthropic_dialect::anthropic_dialect)),
        )
        .route_layer(from_fn(rate_headers::rate_headers));
    Router::new()
        .merge(data_plane)
        .merge(pages::routes(state.clone()))
        .route(
            "/webhooks/stripe",
            post(stripe_webhook::stripe_webhook)
                .layer(axum::extract::DefaultBodyLimit::max(stripe_webhook::MAX_EVENT_BYTES)),
        )
        .route("/.well-known/security.txt", get(security_txt::security_txt))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::public_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        // Outermost last: the request context wraps everything, panics included. CORS sits
        // outside routing so that preflights of data-plane paths never reach a method router.
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(from_fn_with_state(state.cors, cors::cors))
        .layer(from_fn(security_headers))
        .layer(from_fn_with_state(state.proxies, client_ip::client_ip))
        // Shedding sits just inside the context, so an `overloaded` answer still has its id.
        .layer(from_fn_with_state(state.shedding, overload::shed))
        .layer(from_fn_with_state(state.metrics, context::request_context))
}

/// The private metrics listener (`server.metrics_listen`): `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics::metrics)).fallback(not_found).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound { message: "Not found".into(), code: ErrorCode::NotFound }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal { detail: "handler panicked".into() }.into_response()
}

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}
