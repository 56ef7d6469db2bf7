//! Per-request context: the request id (taken from a well-formed `x-request-id` or generated),
//! the start time, and the final shape of error bodies. Invariant: every response carries
//! `x-request-id`, every error body its `request_id`, and every 5xx is logged here, once.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use layers_domain::{base62, RequestId};
use rand::RngCore;
use tokio::time::Instant;
use tracing::Instrument;

use super::access_log;
use super::metrics::RequestMetrics;
use crate::error::{render, ErrorBody, InternalDetail};

/// When the request arrived (the gateway's own clock, for latency).
#[derive(Clone, Copy, Debug)]
pub struct Started(pub Instant);

pub async fn request_context(State(metrics): State<RequestMetrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(generate);
    req.extensions_mut().insert(id.clone());
    req.extensions_mut().insert(Started(started));
    let access = layers_core::access::AccessRecord::default();
    req.extensions_mut().insert(access.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // Every log line of this request carries its ids; `user_id`, `key_id` and `model` are
    // recorded once known. Never e-mails, keys or prompts.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        user_id = tracing::field::Empty,
        key_id = tracing::field::Empty,
        model = tracing::field::Empty,
    );

    let mut resp = next.run(req).instrument(span.clone()).await;
    let _entered = span.enter();

    if let Some(body) = resp.extensions_mut().remove::<ErrorBody>() {
        *resp.body_mut() = Body::from(render(&body, Some(id.as_str())));
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    let status = resp.status();
    metrics.record(status.as_u16());
    if status.is_server_error() {
        let detail = resp.extensions_mut().remove::<InternalDetail>().map(|d| d.0).unwrap_or_default();
        tracing::error!(%method, %path, status = status.as_u16(), detail = %detail, "request failed");
    }
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let line = access_log::Line {
        request_id: id.as_str().to_owned(),
        method,
        path,
        status: status.as_u16(),
        started,
        record: access,
    };
    resp.map(|body| access_log::Logged::wrap(body, line))
}

/// `req_`, 9 base62 characters of the current millisecond, 13 random ones (77 bits): unique,
/// and time-ordered so the usage index on request ids grows at its end instead of scattering.
fn generate() -> RequestId {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut text = [b'0'; 22];
    let mut n = millis;
    for slot in text[..9].iter_mut().rev() {
        *slot = base62::ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    let mut rng = rand::rng();
    let mut r = rng.next_u64();
    for (i, slot) in text[9..].iter_mut().enumerate() {
        if i == 10 {
            r = rng.next_u64();
        }
        *slot = base62::ALPHABET[(r % 62) as usize];
        r /= 62;
    }
    RequestId::from_generated(std::str::from_utf8(&text).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_ids_are_well_formed_and_time_ordered() {
        let a = super::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::generate();
        assert_eq!(a.as_str().len(), 26);
        assert!(a.as_str().starts_with("req_"));
        assert!(a.as_str() < b.as_str(), "{a} then {b}");
        assert!(layers_domain::RequestId::parse(a.as_str()).is_some());
    }
}
