//! Liveness and readiness.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use layers_core::codes::ErrorCode;
use layers_core::readiness::DbHealth;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers (pinged at most once a second, see `Readiness`). Redis is
/// reported but does not make the node unready: a node without Redis limits locally and keeps
/// serving (SPEC §5), whereas failing readiness on every node at once would turn a Redis outage
/// into a full one.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = |why: &str| {
        let status =
            StatusCode::from_u16(ErrorCode::ServiceUnavailable.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        (status, Json(json!({"status": "unavailable", "database": why}))).into_response()
    };
    match state.core.readiness.database().await {
        DbHealth::Ok => match &state.core.redis {
            None => Json(json!({"status": "ready", "database": "ok"})).into_response(),
            Some(r) if r.is_up() => Json(json!({"status": "ready", "database": "ok", "redis": "ok"})).into_response(),
            Some(_) => Json(json!({"status": "degraded", "database": "ok", "redis": "down"})).into_response(),
        },
        DbHealth::Error => unavailable("error"),
        DbHealth::Timeout => unavailable("timeout"),
    }
}
