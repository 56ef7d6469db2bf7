//! CORS for the data plane (`/v1/*`, `/api/v1/*`), SPEC §8.3. Invariant: only origins in
//! `allowed_origins` ever see CORS headers; there is no wildcard; every data-plane response
//! carries `Vary: Origin`, so no cache serves one origin's answer to another.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::error::ApiError;

const ALLOW_METHODS: &str = "POST, GET, OPTIONS";
const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    // OpenRouter's app attribution.
    "http-referer",
    "x-title",
    "x-openrouter-title",
];
const EXPOSE_HEADERS: &str = "x-request-id, request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, \
     x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
     ratelimit-policy, ratelimit, retry-after, retry-after-ms, x-layers-credits-charged, x-layers-credits-remaining, \
     x-layers-provider, x-layers-max-tokens-capped";
const MAX_AGE: &str = "86400";

/// The origins allowed to call the API from a browser.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    origins: Arc<HashSet<String>>,
}

impl CorsPolicy {
    pub fn new(origins: impl IntoIterator<Item = String>) -> CorsPolicy {
        CorsPolicy { origins: Arc::new(origins.into_iter().map(|o| o.trim_end_matches('/').to_owned()).collect()) }
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins.contains(origin)
    }
}

/// Whether CORS applies to a path: the data plane only (SPEC §8.3).
fn is_data_plane(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/api/v1/")
}

pub async fn cors(State(policy): State<CorsPolicy>, req: Request, next: Next) -> Response {
    if !is_data_plane(req.uri().path()) {
        return next.run(req).await;
    }
    let origin = req.headers().get(http::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let is_preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = origin.as_deref().filter(|o| policy.allows(o)).map(str::to_owned);

    if is_preflight {
        let Some(origin) = allowed else { return vary(ApiError::OriginNotAllowed.into_response()) };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let requested = req.headers().get(http::header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let h = resp.headers_mut();
        set_origin(h, &origin);
        h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        if let Ok(v) = HeaderValue::from_str(&allow_headers(requested.as_ref())) {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        return vary(resp);
    }

    let mut resp = next.run(req).await;
    if let Some(origin) = allowed {
        let h = resp.headers_mut();
        set_origin(h, &origin);
        h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    vary(resp)
}

fn vary(mut resp: Response) -> Response {
    resp.headers_mut().append(http::header::VARY, HeaderValue::from_static("Origin"));
    resp
}

fn set_origin(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}

/// Our fixed list, plus the `x-stainless-*` headers the official SDKs send, as requested.
fn allow_headers(requested: Option<&HeaderValue>) -> String {
    let mut out: Vec<String> = ALLOW_HEADERS.iter().map(|s| (*s).to_owned()).collect();
    if let Some(req) = requested.and_then(|v| v.to_str().ok()) {
        for name in req.split(',').map(|s| s.trim().to_ascii_lowercase()) {
            if name.starts_with("x-stainless-")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !out.contains(&name)
            {
                out.push(name);
            }
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stainless_headers_are_reflected_others_are_not() {
        let req = HeaderValue::from_static("X-Stainless-Lang, x-stainless-retry-count, x-evil");
        let got = allow_headers(Some(&req));
        assert!(got.contains("x-stainless-lang") && got.contains("x-stainless-retry-count"));
        assert!(got.contains("authorization") && got.contains("anthropic-dangerous-direct-browser-access"));
        assert!(!got.contains("x-evil"));
    }
}
