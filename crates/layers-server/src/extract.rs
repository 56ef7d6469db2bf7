//! Extractors that parse at the edge: an authenticated principal, and a JSON body checked for
//! media type and size and decoded with the failing field named. Invariant: every rejection is
//! an [`ApiError`], so it has the API's error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use http_body_util::{BodyExt, Limited};
use layers_core::admission::Refused;
use layers_core::auth::Principal;
use layers_core::codes::ErrorCode;
use serde::de::DeserializeOwned;

use std::net::IpAddr;

use crate::error::ApiError;
use crate::middleware::client_ip::ClientIp;
use crate::middleware::rate_headers::RateSlot;
use crate::state::AppState;

/// The app a request says it came from (OpenRouter's `HTTP-Referer` and `X-Title` /
/// `X-OpenRouter-Title` headers), cleaned by `App::from_headers`; never a rejection.
#[derive(Debug, Default)]
pub struct Attribution(pub layers_domain::attribution::App);

impl<S: Send + Sync> FromRequestParts<S> for Attribution {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let title = header("x-title").or_else(|| header("x-openrouter-title"));
        Ok(Attribution(layers_domain::attribution::App::from_headers(header("http-referer"), title)))
    }
}

/// What the API handlers hand the core about a request besides its principal and body: its
/// id and start (set by the context layer), its access-log record and the app it names.
#[derive(Debug)]
pub struct CallInfo {
    request_id: layers_domain::RequestId,
    started: tokio::time::Instant,
    access: layers_core::access::AccessRecord,
    app: layers_domain::attribution::App,
}

impl CallInfo {
    pub fn context(self, principal: Principal, endpoint: &'static str) -> layers_core::chat::CallContext {
        layers_core::chat::CallContext {
            principal,
            request_id: self.request_id,
            started: self.started,
            endpoint,
            app: self.app,
            access: self.access,
        }
    }
}

impl FromRequestParts<AppState> for CallInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let missing = || ApiError::Internal { detail: "the request context layer did not run".into() };
        let request_id = parts.extensions.get::<layers_domain::RequestId>().cloned().ok_or_else(missing)?;
        let started = parts.extensions.get::<crate::middleware::context::Started>().map(|s| s.0).ok_or_else(missing)?;
        let access = parts.extensions.get::<layers_core::access::AccessRecord>().cloned().unwrap_or_default();
        let Ok(Attribution(app)) = Attribution::from_request_parts(parts, state).await;
        Ok(CallInfo { request_id, started, access, app })
    }
}

/// The caller, authenticated by `Authorization: Bearer <key>` (or `x-api-key`).
#[derive(Debug)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = credential(&parts.headers);
        let ip = parts.extensions.get::<ClientIp>().map(|c| c.0).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let admitted = state.core.admit(header, ip).await;
        // The rate headers are written for a refusal by the limit as for an admission.
        if let (Ok((_, admission)) | Err(Refused::RateLimited(admission)), Some(slot)) =
            (&admitted, parts.extensions.get::<RateSlot>())
        {
            slot.set(*admission);
        }
        let principal = match admitted {
            Ok((principal, _)) => principal,
            Err(Refused::Auth(err)) => return Err(err.into()),
            Err(Refused::Blocked(blocked)) => return Err(ApiError::IpBlocked(blocked)),
            Err(Refused::RateLimited(admission)) => return Err(ApiError::RateLimited(admission)),
        };
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(principal.user_id));
        span.record("key_id", tracing::field::display(principal.key_id));
        if let Some(access) = parts.extensions.get::<layers_core::access::AccessRecord>() {
            access.principal(principal.user_id, principal.key_id);
        }
        Ok(Authenticated(principal))
    }
}

/// The credential a request carries. Two `Authorization` headers, two `x-api-key` headers, or
/// both with different keys are ambiguous (a proxy in front may read another one than we do):
/// such a request is refused as a malformed key, never served as either.
fn credential(headers: &http::HeaderMap) -> Option<&str> {
    const AMBIGUOUS: &str = "Bearer (ambiguous credentials)";
    // An empty header is no credential (SDKs send `x-api-key: ""` when its variable is empty).
    let present = |name| -> Vec<&str> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("\u{1}").trim()).filter(|v| !v.is_empty()).collect()
    };
    let auth = present(http::header::AUTHORIZATION.as_str());
    let api_key = present("x-api-key");
    if auth.len() > 1 || api_key.len() > 1 {
        return Some(AMBIGUOUS);
    }
    match (auth.first().copied(), api_key.first().copied()) {
        (Some(a), Some(k)) if layers_core::auth::bearer_token(a) == k => Some(a),
        (Some(_), Some(_)) => Some(AMBIGUOUS),
        (Some(a), None) => Some(a),
        (None, k) => k,
    }
}

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.core.chat.limits().max_body_bytes;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let read = tokio::time::timeout(state.edge.body_read_timeout, Limited::new(req.into_body(), limit).collect());
        let Ok(read) = read.await else { return Err(ApiError::RequestTimeout) };
        let bytes = match read {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::PayloadTooLarge { limit })
            }
            Err(_) => {
                return Err(ApiError::Invalid {
                    message: "The request body could not be read".into(),
                    param: None,
                    code: ErrorCode::InvalidBody,
                })
            }
        };
        decode(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Decodes JSON, naming the field that failed in `param` (SPEC §2.3).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let inner = err.inner();
        let path = err.path().to_string();
        let param = if inner.is_syntax() || inner.is_eof() {
            // Malformed JSON: the body as a whole is at fault.
            "body".to_owned()
        } else {
            missing_field(&inner.to_string())
                .map(|field| if path == "." { field.to_owned() } else { format!("{path}.{field}") })
                .unwrap_or_else(|| if path == "." { "body".to_owned() } else { path })
        };
        invalid_json(inner, param)
    })?;
    // Trailing garbage after the JSON value is malformed input too.
    de.end().map_err(|e| invalid_json(&e, "body".to_owned()))?;
    Ok(value)
}

fn invalid_json(inner: &serde_json::Error, param: String) -> ApiError {
    let (code, message) = if inner.is_syntax() || inner.is_eof() {
        (ErrorCode::InvalidJson, format!("The request body is not valid JSON: {inner}"))
    } else {
        (ErrorCode::InvalidValue, format!("Invalid request body: {inner}"))
    };
    ApiError::Invalid { message, param: Some(param), code }
}

/// `missing field `model`` → `model`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers_providers::ChatRequest;

    fn param_of(body: &str) -> (String, &'static str) {
        match decode::<ChatRequest>(body.as_bytes()) {
            Err(ApiError::Invalid { param, code, .. }) => (param.unwrap(), code.as_str()),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_failing_field() {
        assert_eq!(param_of(r#"{"messages":[]}"#), ("model".into(), "invalid_value"));
        assert_eq!(param_of(r#"{"model":"a/b","messages":[{"role":"wizard"}]}"#).0, "messages[0].role");
        assert_eq!(param_of(r#"{"model":"a/b","messages":[],"max_tokens":"x"}"#).0, "max_tokens");
        assert_eq!(param_of(r#"{"model":"a/b","messages":[{"content":"x"}]}"#).0, "messages[0].role");
        assert_eq!(param_of(r#"{"model": "#).1, "invalid_json");
        assert_eq!(param_of(r#"{"model":"a/b","messages":[]} trailing"#).1, "invalid_json");
        assert_eq!(param_of("[]").0, "body");
    }
}
