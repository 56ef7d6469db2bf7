//! Rate-limit headers on every data-plane response of an authenticated request (SPEC §5):
//! OpenAI's `x-ratelimit-*` and the IETF `RateLimit-Policy` / `RateLimit`. Invariant: the values
//! are the ones the limiter decided on for this very request.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use layers_core::ratelimit::Admission;
use layers_domain::ratelimit::format_reset;

/// Where the authentication extractor leaves the request's admission for the way out.
#[derive(Clone, Debug, Default)]
pub struct RateSlot(Arc<Mutex<Option<Admission>>>);

impl RateSlot {
    pub fn set(&self, admission: Admission) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(admission);
        }
    }

    fn take(&self) -> Option<Admission> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

pub async fn rate_headers(mut req: Request, next: Next) -> Response {
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).await;
    if let Some(admission) = slot.take() {
        write(resp.headers_mut(), &admission);
    }
    resp
}

/// Writes the headers of `a` (also used for the 429 itself).
pub fn write(h: &mut HeaderMap, a: &Admission) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    let window = a.window_ms.div_ceil(1_000);
    let r = &a.requests;
    put("x-ratelimit-limit-requests", r.limit.to_string());
    put("x-ratelimit-remaining-requests", r.remaining.to_string());
    put("x-ratelimit-reset-requests", format_reset(r.reset_ms));
    let mut policy = format!("\"requests\";q={};w={window}", r.limit);
    let mut state = format!("\"requests\";r={};t={}", r.remaining, r.reset_ms.div_ceil(1_000));
    if let Some(t) = &a.tokens {
        put("x-ratelimit-limit-tokens", t.limit.to_string());
        put("x-ratelimit-remaining-tokens", t.remaining.to_string());
        put("x-ratelimit-reset-tokens", format_reset(t.reset_ms));
        policy.push_str(&format!(", \"tokens\";q={};w={window}", t.limit));
        state.push_str(&format!(", \"tokens\";r={};t={}", t.remaining, t.reset_ms.div_ceil(1_000)));
    }
    put("ratelimit-policy", policy);
    put("ratelimit", state);
}
