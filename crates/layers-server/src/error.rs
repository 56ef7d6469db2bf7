//! The one API error type and its response: OpenAI's error shape (SPEC §2.4).
//! Invariant: status codes are decided in `status()` only; internal details never reach the
//! body — they ride in a response extension to the one middleware that logs them.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use layers_core::auth::AuthError;
use layers_core::billing::BillingError;
use layers_core::chat::{ChatError, UpstreamFailure};
use layers_core::ipguard::Blocked;
use layers_core::ratelimit::{Admission, Refusal};
use layers_domain::ratelimit::format_reset;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Auth(AuthError),
    Invalid {
        message: String,
        param: Option<String>,
        code: &'static str,
    },
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    NotFound {
        message: String,
        code: &'static str,
    },
    MethodNotAllowed,
    OriginNotAllowed,
    Upstream(UpstreamFailure),
    Billing(BillingError),
    RateLimited(Admission),
    IpBlocked(Blocked),
    Unavailable {
        detail: String,
    },
    /// This node has `max_in_flight` requests already.
    Overloaded,
    /// The request body did not arrive within the body deadline.
    RequestTimeout,
    Internal {
        detail: String,
    },
}

/// The client-visible part of an error, kept on the response for the middleware that adds
/// the request id.
#[derive(Clone, Debug)]
pub struct ErrorBody {
    pub message: String,
    pub error_type: &'static str,
    pub code: &'static str,
    pub param: Option<String>,
}

/// Server-side detail of a 5xx, logged once by the error middleware and never sent.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(AuthError::Suspended) => StatusCode::FORBIDDEN,
            ApiError::Auth(AuthError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::Upstream(f) => StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY),
            ApiError::Billing(b) => match b {
                BillingError::TooExpensive { .. } => StatusCode::BAD_REQUEST,
                BillingError::Insufficient { .. } | BillingError::KeyLimit { .. } => StatusCode::PAYMENT_REQUIRED,
                BillingError::HourlyLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
                BillingError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IpBlocked(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable { .. } | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let body =
            |message: String, error_type, code, param: Option<String>| ErrorBody { message, error_type, code, param };
        match self {
            ApiError::Auth(err @ AuthError::Suspended) => {
                body(err.to_string(), "permission_error", "account_suspended", None)
            }
            ApiError::Auth(AuthError::Unavailable(_)) => {
                body("Service temporarily unavailable".into(), "api_error", "service_unavailable", None)
            }
            ApiError::Auth(err) => {
                let code = match err {
                    AuthError::Missing => "missing_api_key",
                    AuthError::Format => "invalid_api_key_format",
                    AuthError::Deactivated => "api_key_deactivated",
                    AuthError::Expired => "api_key_expired",
                    _ => "invalid_api_key",
                };
                body(err.to_string(), "authentication_error", code, None)
            }
            ApiError::Invalid { message, param, code } => {
                body(message.clone(), "invalid_request_error", code, param.clone())
            }
            ApiError::PayloadTooLarge { limit } => body(
                format!("Request body is too large (limit {limit} bytes)"),
                "invalid_request_error",
                "request_too_large",
                None,
            ),
            ApiError::UnsupportedMediaType => body(
                "Content-Type must be application/json".into(),
                "invalid_request_error",
                "unsupported_media_type",
                None,
            ),
            ApiError::NotFound { message, code } => body(message.clone(), "invalid_request_error", code, None),
            ApiError::MethodNotAllowed => {
                body("Method not allowed".into(), "invalid_request_error", "method_not_allowed", None)
            }
            ApiError::OriginNotAllowed => {
                body("Origin not allowed".into(), "permission_error", "origin_not_allowed", None)
            }
            ApiError::Upstream(f) => body(f.message.clone(), f.error_type, f.code, f.param.clone()),
            ApiError::Billing(b) => match b {
                BillingError::TooExpensive { .. } => {
                    body(b.to_string(), "invalid_request_error", "request_too_expensive", Some("max_tokens".into()))
                }
                BillingError::Insufficient { .. } => {
                    body(b.to_string(), "insufficient_quota", "insufficient_credits", None)
                }
                BillingError::KeyLimit { .. } => {
                    body(b.to_string(), "insufficient_quota", "key_spend_limit_reached", None)
                }
                BillingError::HourlyLimit { .. } => {
                    body(b.to_string(), "rate_limit_error", "spend_limit_exceeded", None)
                }
                BillingError::Unavailable(_) => {
                    body("Service temporarily unavailable".into(), "api_error", "service_unavailable", None)
                }
            },
            ApiError::RateLimited(a) => {
                let retry = format_reset(a.retry_after_ms);
                let (kind, message) = match a.refused {
                    Some(Refusal::Tokens) => {
                        let limit = a.tokens.map_or(0, |t| t.limit);
                        (
                            "tokens",
                            format!(
                                "Rate limit reached: {limit} tokens per minute for this API key. Retry in {retry}."
                            ),
                        )
                    }
                    _ => {
                        let limit = a.requests.limit;
                        (
                            "requests",
                            format!(
                                "Rate limit reached: {limit} requests per minute for this API key. Retry in {retry}."
                            ),
                        )
                    }
                };
                body(message, kind, "rate_limit_exceeded", None)
            }
            ApiError::IpBlocked(b) => body(
                format!(
                    "Too many failed authentication attempts from this address; try again in {}.",
                    format_reset(b.retry_after.as_millis() as u64)
                ),
                "permission_error",
                "ip_blocked",
                None,
            ),
            ApiError::Unavailable { .. } => {
                body("Service temporarily unavailable".into(), "api_error", "service_unavailable", None)
            }
            ApiError::Overloaded => {
                body("The server is overloaded; retry shortly".into(), "api_error", "overloaded", None)
            }
            ApiError::RequestTimeout => body(
                "The request body was not received in time".into(),
                "invalid_request_error",
                "request_timeout",
                None,
            ),
            ApiError::Internal { .. } => body("Internal server error".into(), "api_error", "internal_error", None),
        }
    }

    /// Errors a retry cannot fix tell the official SDKs not to retry (SPEC §2.4).
    fn should_retry(&self) -> Option<bool> {
        match self.status().as_u16() {
            400 | 401 | 402 | 403 | 404 | 405 | 413 | 415 => Some(false),
            // A spend limit does not lift within the SDK's retry window.
            429 if matches!(self, ApiError::Billing(BillingError::HourlyLimit { .. })) => Some(false),
            _ => None,
        }
    }

    fn internal_detail(&self) -> Option<String> {
        match self {
            ApiError::Auth(AuthError::Unavailable(source)) => Some(error_chain(source)),
            ApiError::Billing(err @ BillingError::Unavailable(_)) => Some(error_chain(err)),
            ApiError::Unavailable { detail } | ApiError::Internal { detail } => Some(detail.clone()),
            _ => None,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        ApiError::Auth(err)
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::Invalid { message, param, code } => ApiError::Invalid { message, param, code },
            ChatError::ModelNotFound { message } => ApiError::NotFound { message, code: "model_not_found" },
            ChatError::Upstream(f) => ApiError::Upstream(f),
            ChatError::Billing(b) => ApiError::Billing(b),
            ChatError::Internal(detail) => ApiError::Internal { detail: detail.to_owned() },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body();
        let mut resp = (status, render(&body, None)).into_response();
        let headers = resp.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(retry) = self.should_retry() {
            headers.insert("x-should-retry", HeaderValue::from_static(if retry { "true" } else { "false" }));
        }
        match &self {
            ApiError::Upstream(UpstreamFailure { retry_after: Some(after), .. }) => insert_retry_after(headers, *after),
            ApiError::RateLimited(a) => {
                crate::middleware::rate_headers::write(headers, a);
                insert_retry_after(headers, std::time::Duration::from_millis(a.retry_after_ms.max(1)));
            }
            ApiError::IpBlocked(b) => insert_retry_after(headers, b.retry_after),
            ApiError::Overloaded => insert_retry_after(headers, std::time::Duration::from_secs(1)),
            // The database or the settlement writer is catching up: worth a retry shortly.
            ApiError::Billing(BillingError::Unavailable(_)) => {
                insert_retry_after(headers, std::time::Duration::from_secs(1))
            }
            _ => {}
        }
        if let Some(detail) = self.internal_detail() {
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp.extensions_mut().insert(body);
        resp
    }
}

/// `retry-after` (seconds, rounded up) and `retry-after-ms`.
pub fn insert_retry_after(headers: &mut http::HeaderMap, after: std::time::Duration) {
    let secs = after.as_millis().div_ceil(1000).max(1);
    let after = after.max(std::time::Duration::from_millis(1));
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        headers.insert(http::header::RETRY_AFTER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&after.as_millis().to_string()) {
        headers.insert("retry-after-ms", v);
    }
}

/// `{"error":{"message","type","code","param"},"request_id"}`.
pub fn render(body: &ErrorBody, request_id: Option<&str>) -> String {
    let mut v = json!({
        "error": {"message": body.message, "type": body.error_type, "code": body.code, "param": body.param},
    });
    if let Some(id) = request_id {
        v["request_id"] = json!(id);
    }
    v.to_string()
}

use layers_core::error::chain as error_chain;

/// Renders any error's chain for server logs.
pub fn chain(err: &dyn std::error::Error) -> String {
    error_chain(err)
}
