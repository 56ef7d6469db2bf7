//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers. Redis is reported but does not make the node unready: a
/// node without Redis limits locally and keeps serving (SPEC §5), whereas failing readiness on
/// every node at once would turn a Redis outage into a full one.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), state.core.store.ping()).await;
    match db {
        Ok(Ok(())) => match &state.core.redis {
            None => Json(json!({"status": "ready", "database": "ok"})).into_response(),
            Some(r) if r.is_up() => Json(json!({"status": "ready", "database": "ok", "redis": "ok"})).into_response(),
            Some(_) => Json(json!({"status": "degraded", "database": "ok", "redis": "down"})).into_response(),
        },
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "database": "error"})))
                .into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "database": "timeout"})))
            .into_response(),
    }
}
