//! Per-request context: the request id (taken from a well-formed `x-request-id` or generated),
//! the start time, and the final shape of error bodies. Invariant: every response carries
//! `x-request-id`, every error body its `request_id`, and every 5xx is logged here, once.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use layers_domain::{base62, RequestId};
use rand::RngCore;
use tokio::time::Instant;

use crate::error::{render, ErrorBody, InternalDetail};

/// When the request arrived (the gateway's own clock, for latency).
#[derive(Clone, Copy, Debug)]
pub struct Started(pub Instant);

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(generate);
    req.extensions_mut().insert(id.clone());
    req.extensions_mut().insert(Started(started));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();

    let mut resp = next.run(req).await;

    if let Some(body) = resp.extensions_mut().remove::<ErrorBody>() {
        *resp.body_mut() = Body::from(render(&body, Some(id.as_str())));
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    let status = resp.status();
    if status.is_server_error() {
        let detail = resp.extensions_mut().remove::<InternalDetail>().map(|d| d.0).unwrap_or_default();
        tracing::error!(request_id = %id, %method, %path, status = status.as_u16(), detail = %detail, "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, %path, status = status.as_u16(),
                        elapsed_us = started.elapsed().as_micros() as u64, "request");
    }
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn generate() -> RequestId {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    RequestId::from_generated(&base62::encode_fixed(&bytes, base62::width_for_bytes(16)).unwrap_or_default())
}
