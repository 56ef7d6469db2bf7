//! The HTTP surface of Layers, built on axum. Handlers are thin: they extract, call one
//! `layers-core` service and render.
//!
//! Components:
//! - [`router`]: `build_router(state)`, every path and layer in one place.
//! - [`api`]: handlers of the public API.
//! - [`extract`]: authentication and JSON-body extractors.
//! - [`middleware`]: request context (ids, error bodies, 5xx logging) and CORS.
//! - [`error`]: `ApiError`, the one mapping from failures to responses.
//! - [`state`]: the application state.

pub mod api;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod router;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;

pub use router::build_router;
pub use state::AppState;

/// Serves the app on `listener` until `shutdown` resolves, then finishes in-flight requests
/// (streams included) and returns.
pub async fn serve<F>(listener: tokio::net::TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt;
    let app = build_router(state);
    // Small SSE writes must leave at once: Nagle's algorithm would hold them for the peer's
    // delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
