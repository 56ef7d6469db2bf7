//! How a failed upstream call is shown to the client (chat, embeddings and images alike): its
//! error code and a message that never leaks gateway internals. Invariant: one mapping, used for HTTP errors and for error
//! events inside a stream alike.

use std::time::Duration;

use layers_providers::ProviderError;

use crate::codes::ErrorCode;

/// The client-facing view of an upstream failure; its status and type follow from the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
    /// What went wrong, for the server's log only (the provider's error and its sources).
    pub cause: Option<String>,
}

impl UpstreamFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> UpstreamFailure {
        UpstreamFailure { code, message: message.into(), param: None, retry_after: None, cause: None }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

pub fn describe(err: &ProviderError) -> UpstreamFailure {
    use ErrorCode::*;
    let view = |code, message: &str| UpstreamFailure::new(code, message);
    let retrying = |code, message: &str, retry_after: Option<Duration>| UpstreamFailure {
        retry_after,
        ..UpstreamFailure::new(code, message)
    };
    let mut failure = match err {
        ProviderError::Connect(_) => view(UpstreamUnreachable, "The upstream provider could not be reached"),
        ProviderError::Timeout(_) => view(UpstreamTimeout, "The upstream provider timed out"),
        ProviderError::Status { status, message, retry_after } => match status {
            400 | 422 => view(
                UpstreamRejectedRequest,
                message.as_deref().unwrap_or("The upstream provider rejected the request"),
            ),
            413 => view(RequestTooLarge, "The request is too large for the upstream provider"),
            401 | 403 => view(UpstreamAuthFailed, "The upstream provider refused the gateway's credentials"),
            404 => view(UpstreamModelUnavailable, "The upstream provider does not serve this model"),
            429 => retrying(
                UpstreamRateLimited,
                "The upstream provider is rate limiting requests; retry later",
                *retry_after,
            ),
            503 | 529 => retrying(UpstreamOverloaded, "The upstream provider is overloaded; retry later", *retry_after),
            _ => retrying(UpstreamError, "The upstream provider returned an error", *retry_after),
        },
        ProviderError::Protocol(_) => view(UpstreamInvalidResponse, "The upstream provider sent an invalid response"),
        ProviderError::MidStream { .. } | ProviderError::Transport(_) => {
            view(UpstreamError, "The upstream provider failed before completing the response")
        }
        ProviderError::Unavailable { retry_after } => retrying(
            UpstreamUnavailable,
            "Every route to this model is failing and temporarily out of rotation; retry later",
            *retry_after,
        ),
        ProviderError::Unsupported { param, message } => {
            UpstreamFailure { param: Some(param.clone()), ..view(UnsupportedParameter, message) }
        }
        ProviderError::OverBudget => retrying(
            Overloaded,
            "The gateway is buffering too much upstream data; retry shortly",
            Some(Duration::from_secs(1)),
        ),
        // Nobody reads it: the client is gone. Recorded in the usage row as 499.
        ProviderError::ClientGone => view(ClientClosed, "The client closed the request"),
    };
    failure.cause = Some(crate::error::chain(err));
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers_providers::TimeoutPhase;

    #[test]
    fn maps_statuses() {
        let s = |status| ProviderError::Status { status, message: Some("secret internals?".into()), retry_after: None };
        assert_eq!(describe(&s(500)).status(), 502);
        assert!(!describe(&s(500)).message.contains("secret"));
        assert_eq!(describe(&s(400)).status(), 400);
        assert_eq!(describe(&s(400)).message, "secret internals?", "client errors relay the provider's explanation");
        assert_eq!(describe(&s(401)).status(), 502);
        assert_eq!(describe(&s(429)).status(), 429);
        assert_eq!(describe(&ProviderError::Timeout(TimeoutPhase::Idle)).status(), 504);
    }
}
