//! The one API error type and its response: OpenAI's error shape (SPEC §2.4).
//! Invariant: every status and error type comes from the error's `ErrorCode`
//! (`layers_core::codes`); internal details never reach the body — they ride in a response
//! extension to the one middleware that logs them, once per 5xx.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use layers_core::auth::AuthError;
use layers_core::billing::BillingError;
use layers_core::chat::{ChatError, UpstreamFailure};
use layers_core::codes::ErrorCode;
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
        code: ErrorCode,
    },
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    NotFound {
        message: String,
        code: ErrorCode,
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
/// the request id (and for the Anthropic dialect, which re-dresses it).
#[derive(Clone, Debug)]
pub struct ErrorBody {
    pub message: String,
    pub error_type: &'static str,
    pub code: ErrorCode,
    pub param: Option<String>,
}

/// Server-side detail of a 5xx, logged once by the error middleware and never sent.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

impl ApiError {
    /// What the error is, in the API's terms; its status and type follow from it.
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            ApiError::Auth(err) => match err {
                AuthError::Missing => C::MissingApiKey,
                AuthError::Format => C::InvalidApiKeyFormat,
                AuthError::Invalid | AuthError::Unverified => C::InvalidApiKey,
                AuthError::Deactivated => C::ApiKeyDeactivated,
                AuthError::Expired => C::ApiKeyExpired,
                AuthError::Suspended => C::AccountSuspended,
                AuthError::Unavailable(_) => C::ServiceUnavailable,
            },
            ApiError::Invalid { code, .. } | ApiError::NotFound { code, .. } => *code,
            ApiError::PayloadTooLarge { .. } => C::RequestTooLarge,
            ApiError::UnsupportedMediaType => C::UnsupportedMediaType,
            ApiError::MethodNotAllowed => C::MethodNotAllowed,
            ApiError::OriginNotAllowed => C::OriginNotAllowed,
            ApiError::Upstream(f) => f.code,
            ApiError::Billing(b) => match b {
                BillingError::TooExpensive { .. } => C::RequestTooExpensive,
                BillingError::Insufficient { .. } => C::InsufficientCredits,
                BillingError::KeyLimit { .. } => C::KeySpendLimitReached,
                BillingError::HourlyLimit { .. } => C::SpendLimitExceeded,
                BillingError::Unavailable(_) => C::ServiceUnavailable,
            },
            ApiError::RateLimited(_) => C::RateLimitExceeded,
            ApiError::IpBlocked(_) => C::IpBlocked,
            ApiError::Unavailable { .. } => C::ServiceUnavailable,
            ApiError::Overloaded => C::Overloaded,
            ApiError::RequestTimeout => C::RequestTimeout,
            ApiError::Internal { .. } => C::InternalError,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn body(&self) -> ErrorBody {
        let code = self.code();
        let body =
            |message: String, param: Option<String>| ErrorBody { message, error_type: code.error_type(), code, param };
        match self {
            ApiError::Auth(AuthError::Unavailable(_))
            | ApiError::Billing(BillingError::Unavailable(_))
            | ApiError::Unavailable { .. } => body("Service temporarily unavailable".into(), None),
            ApiError::Auth(err) => body(err.to_string(), None),
            ApiError::Invalid { message, param, .. } => body(message.clone(), param.clone()),
            ApiError::PayloadTooLarge { limit } => {
                body(format!("Request body is too large (limit {limit} bytes)"), None)
            }
            ApiError::UnsupportedMediaType => body("Content-Type must be application/json".into(), None),
            ApiError::NotFound { message, .. } => body(message.clone(), None),
            ApiError::MethodNotAllowed => body("Method not allowed".into(), None),
            ApiError::OriginNotAllowed => body("Origin not allowed".into(), None),
            ApiError::Upstream(f) => body(f.message.clone(), f.param.clone()),
            ApiError::Billing(b @ BillingError::TooExpensive { .. }) => body(b.to_string(), Some("max_tokens".into())),
            ApiError::Billing(b) => body(b.to_string(), None),
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
                ErrorBody { error_type: kind, ..body(message, None) }
            }
            ApiError::IpBlocked(b) => body(
                format!(
                    "Too many failed authentication attempts from this address; try again in {}.",
                    format_reset(b.retry_after.as_millis() as u64)
                ),
                None,
            ),
            ApiError::Overloaded => body("The server is overloaded; retry shortly".into(), None),
            ApiError::RequestTimeout => body("The request body was not received in time".into(), None),
            ApiError::Internal { .. } => body("Internal server error".into(), None),
        }
    }

    /// What the server's log gets for a 5xx: the cause, with its sources.
    fn internal_detail(&self) -> Option<String> {
        match self {
            ApiError::Auth(AuthError::Unavailable(source)) => Some(error_chain(source)),
            ApiError::Billing(err @ BillingError::Unavailable(_)) => Some(error_chain(err)),
            ApiError::Upstream(f) => f.cause.clone(),
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
            ChatError::ModelNotFound { message } => ApiError::NotFound { message, code: ErrorCode::ModelNotFound },
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
        if let Some(retry) = self.code().should_retry() {
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
        "error": {"message": body.message, "type": body.error_type, "code": body.code.as_str(), "param": body.param},
    });
    if let Some(id) = request_id {
        v["request_id"] = json!(id);
    }
    v.to_string()
}

pub use layers_core::error::chain as error_chain;
