//! The Anthropic dialect of `/v1/messages`: the key may come as `x-api-key` (as the Anthropic
//! SDK sends it), errors use Anthropic's envelope `{"type":"error","error":{"type","message"}}`
//! with its error types (402 → `billing_error`, an overloaded upstream → 529
//! `overloaded_error`), and every response carries `request-id` beside `x-request-id`.
//! Invariant: the status and message are decided where every other error is (`ApiError`); this
//! layer only re-dresses them.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use layers_domain::RequestId;
use serde_json::json;

use crate::error::ErrorBody;

pub async fn anthropic_dialect(mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(http::header::AUTHORIZATION) {
        let bearer = req
            .headers()
            .get("x-api-key")
            .and_then(|k| k.to_str().ok())
            .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())).ok());
        if let Some(v) = bearer {
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
    }
    let id = req.extensions().get::<RequestId>().cloned();
    let mut resp = next.run(req).await;
    if let Some(body) = resp.extensions_mut().remove::<ErrorBody>() {
        let (status, kind) = body.code.anthropic();
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut v = json!({"type": "error", "error": {"type": kind, "message": body.message}});
        if let Some(id) = &id {
            v["request_id"] = json!(id.as_str());
        }
        *resp.body_mut() = Body::from(v.to_string());
        let h = resp.headers_mut();
        h.remove(http::header::CONTENT_LENGTH);
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}
