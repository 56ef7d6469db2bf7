//! Stripe's HTTP API, spoken directly: form-encoded POSTs, each with an `Idempotency-Key` (a
//! retry, ours or a second node's, creates nothing twice), GETs with query strings, JSON back.
//! The base URL is configurable, so tests run against the testkit's stateful mock. Invariant:
//! the secret key is sent only in the `Authorization` header and never logged; no redirect is
//! followed; every call is bounded in time.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

/// The API version Layers reads objects in (sent with every call).
pub const API_VERSION: &str = "2024-06-20";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Pauses before retrying a call that failed in a way a retry can fix (same idempotency key).
const RETRIES: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(1)];
/// Largest answer read from Stripe.
const MAX_ANSWER_BYTES: usize = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// Stripe answered with an error object.
    #[error("Stripe refused the call ({status}, {kind}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        status: u16,
        kind: String,
        code: Option<String>,
        /// Stripe's own message (a card decline's reason), safe to show to the account owner.
        message: String,
        /// The PaymentIntent a failed confirmation left behind.
        payment_intent: Option<String>,
    },
    #[error("Stripe's answer could not be read")]
    Malformed(#[source] serde_json::Error),
}

#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    secret: SecretString,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(serde::Deserialize)]
struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    payment_intent: Option<super::wire::PaymentIntent>,
}

impl StripeClient {
    pub fn new(base: &str, secret: SecretString) -> Result<StripeClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Layers/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StripeClient { http, base: base.trim_end_matches('/').to_owned(), secret })
    }

    /// POSTs `form` to `path` (e.g. `/v1/customers`) under `idempotency_key`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<T, StripeError> {
        self.call(|| self.http.post(self.url(path)).form(form).header("Idempotency-Key", idempotency_key)).await
    }

    /// GETs `path` with `query`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, StripeError> {
        self.call(|| self.http.get(self.url(path)).query(query)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call<T: DeserializeOwned>(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Result<T, StripeError> {
        let mut attempt = 0;
        loop {
            let sent =
                request().bearer_auth(self.secret.expose_secret()).header("Stripe-Version", API_VERSION).send().await;
            let retry = match sent {
                Ok(answer) => {
                    let status = answer.status();
                    let body = read_bounded(answer).await.map_err(StripeError::Unreachable)?;
                    if status.is_success() {
                        return serde_json::from_slice(&body).map_err(StripeError::Malformed);
                    }
                    let err = api_error(status.as_u16(), &body);
                    // Stripe: 409 (an idempotent request in flight), 429 and 5xx may be retried
                    // with the same key; anything else is the answer.
                    if !(status.as_u16() == 409 || status.as_u16() == 429 || status.is_server_error()) {
                        return Err(err);
                    }
                    err
                }
                Err(err) => StripeError::Unreachable(err),
            };
            let Some(pause) = RETRIES.get(attempt) else { return Err(retry) };
            attempt += 1;
            tracing::debug!(error = %crate::error::chain(&retry), attempt, "retrying a Stripe call");
            tokio::time::sleep(*pause).await;
        }
    }
}

fn api_error(status: u16, body: &[u8]) -> StripeError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => StripeError::Api {
            status,
            kind: b.error.kind,
            code: b.error.code,
            message: b.error.message.unwrap_or_default(),
            payment_intent: b.error.payment_intent.map(|p| p.id),
        },
        Err(_) => StripeError::Api {
            status,
            kind: "api_error".into(),
            code: None,
            message: String::new(),
            payment_intent: None,
        },
    }
}

async fn read_bounded(mut answer: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
