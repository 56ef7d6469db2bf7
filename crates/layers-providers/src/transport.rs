//! HTTP plumbing shared by adapters: the client, bounded body reads, error responses.
//! Invariant: nothing read from an upstream is unbounded in size or time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::budget::{Budget, Held};
use crate::error::{ProviderError, TimeoutPhase};
use crate::timing::Timeouts;

/// Largest non-streamed upstream body accepted (four images in b64_json fit comfortably);
/// every body is also held against the node's [`Budget`].
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest error body read from an upstream.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// A client tuned for one provider. It follows no redirect: on another host reqwest would
/// strip `Authorization` but not `x-api-key` or `x-goog-api-key`, and a 307/308 would resend
/// the prompt; a 3xx is an upstream error like any other non-2xx.
pub fn client(timeouts: &Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .user_agent(concat!("layers/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends a request, waiting at most the first-byte timeout for the response headers.
pub async fn send(rb: reqwest::RequestBuilder, timeouts: &Timeouts) -> Result<reqwest::Response, ProviderError> {
    let resp = tokio::time::timeout(timeouts.first_byte, rb.send())
        .await
        .map_err(|_| ProviderError::Timeout(TimeoutPhase::FirstByte))?
        .map_err(ProviderError::from_send)?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(status_error(resp).await)
    }
}

/// A body read whole, with the budget it holds until dropped (parse it, then let it go).
#[derive(Debug)]
pub struct Body {
    bytes: Bytes,
    _held: Held,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a whole body, bounded in size, by the call's deadline and, when given, by the node's
/// budget (an answer is; a small error body read once is bounded by its size alone).
pub async fn read_body(
    resp: reqwest::Response,
    deadline: Instant,
    limit: usize,
    budget: Option<&Budget>,
) -> Result<Body, ProviderError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProviderError::Protocol("response body too large"));
    }
    let mut held = Held::default();
    if let (Some(budget), Some(n)) = (budget, resp.content_length()) {
        budget.cover(&mut held, n as usize)?;
    }
    let mut stream = resp.bytes_stream();
    let mut buf = BytesMut::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::Total))?;
        match next {
            Some(Ok(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(ProviderError::Protocol("response body too large"));
                }
                if let Some(budget) = budget {
                    budget.cover(&mut held, buf.len() + chunk.len())?;
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(ProviderError::Transport(e)),
            None => return Ok(Body { bytes: buf.freeze(), _held: held }),
        }
    }
}

/// Turns a non-2xx response into an error, with the provider's message and retry hint.
pub async fn status_error(resp: reqwest::Response) -> ProviderError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let deadline = Instant::now() + Duration::from_secs(5);
    let message = read_body(resp, deadline, MAX_ERROR_BYTES, None).await.ok().and_then(|b| error_message(&b));
    // Some providers answer 400 for the operator's account problems (Anthropic: credit balance
    // too low; Gemini: API_KEY_INVALID). Those are not the client's fault: report them as a
    // refused credential, so another route is tried and the client sees no provider text.
    let status = if status == 400 && message.as_deref().is_some_and(operator_problem) { 403 } else { status };
    ProviderError::Status { status, message, retry_after }
}

fn operator_problem(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["credit balance is too low", "api key not valid", "api_key_invalid", "billing", "quota exceeded for quota metric"]
        .iter()
        .any(|marker| m.contains(marker))
}

/// The human message inside an error body of OpenAI, Anthropic or Google shape.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let msg = err.get("message").and_then(Value::as_str).or_else(|| err.as_str())?;
    Some(msg.chars().take(1000).collect())
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64));
    }
    let secs = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_each_provider_shape() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#).as_deref(),
            Some("Overloaded")
        );
        assert_eq!(error_message(b"<html>"), None);
    }

    #[test]
    fn operator_account_problems_are_not_the_clients() {
        assert!(operator_problem("Your credit balance is too low to access the Anthropic API."));
        assert!(operator_problem("API key not valid. Please pass a valid API key."));
        assert!(!operator_problem("messages: roles must alternate"));
    }

    #[test]
    fn retry_after_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }
}
