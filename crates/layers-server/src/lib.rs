//! The HTTP surface of Layers, built on axum. Handlers are thin: they extract, call one
//! `layers-core` service and render.
//!
//! Components:
//! - [`router`]: `build_router(state)`, every path and layer in one place.
//! - [`api`]: handlers of the public API.
//! - [`extract`]: authentication and JSON-body extractors.
//! - [`middleware`]: request context (ids, error bodies, 5xx logging) and CORS.
//! - [`pages`]: the HTML pages people use (sign-up, login, recovery, the dashboard), with
//!   their sessions, cookies and CSRF tokens.
//! - [`error`]: `ApiError`, the one mapping from failures to responses.
//! - [`state`]: the application state.
//! - [`connections`]: the connection cap, idle deadlines and socket activity.

pub mod api;
pub mod connections;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod pages;
pub mod router;
pub mod state;

mod serve;

pub use router::build_router;
pub use serve::{serve, serve_metrics};
pub use state::AppState;
