//! How a failed upstream call is shown to the client: status, error code and a message that
//! never leaks gateway internals. Invariant: one mapping, used for HTTP errors and for error
//! events inside a stream alike.

use std::time::Duration;

use layers_providers::ProviderError;

/// The client-facing view of an upstream failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub status: u16,
    pub error_type: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
}

pub fn describe(err: &ProviderError) -> UpstreamFailure {
    let view = |status, error_type, code, message: &str| UpstreamFailure {
        status,
        error_type,
        code,
        message: message.to_owned(),
        param: None,
        retry_after: None,
    };
    match err {
        ProviderError::Connect(_) => {
            view(502, "api_error", "upstream_unreachable", "The upstream provider could not be reached")
        }
        ProviderError::Timeout(_) => view(504, "api_error", "upstream_timeout", "The upstream provider timed out"),
        ProviderError::Status { status, message, retry_after } => match status {
            400 | 422 => view(
                400,
                "invalid_request_error",
                "upstream_rejected_request",
                message.as_deref().unwrap_or("The upstream provider rejected the request"),
            ),
            413 => view(
                413,
                "invalid_request_error",
                "request_too_large",
                "The request is too large for the upstream provider",
            ),
            401 | 403 => view(
                502,
                "api_error",
                "upstream_auth_failed",
                "The upstream provider refused the gateway's credentials",
            ),
            404 => {
                view(502, "api_error", "upstream_model_unavailable", "The upstream provider does not serve this model")
            }
            429 => UpstreamFailure {
                retry_after: *retry_after,
                ..view(
                    429,
                    "rate_limit_error",
                    "upstream_rate_limited",
                    "The upstream provider is rate limiting requests; retry later",
                )
            },
            503 | 529 => UpstreamFailure {
                retry_after: *retry_after,
                ..view(503, "api_error", "upstream_overloaded", "The upstream provider is overloaded; retry later")
            },
            _ => UpstreamFailure {
                retry_after: *retry_after,
                ..view(502, "api_error", "upstream_error", "The upstream provider returned an error")
            },
        },
        ProviderError::Protocol(_) => {
            view(502, "api_error", "upstream_invalid_response", "The upstream provider sent an invalid response")
        }
        ProviderError::MidStream { .. } | ProviderError::Transport(_) => {
            view(502, "api_error", "upstream_error", "The upstream provider failed before completing the response")
        }
        ProviderError::Unavailable { retry_after } => UpstreamFailure {
            retry_after: *retry_after,
            ..view(
                503,
                "api_error",
                "upstream_unavailable",
                "Every route to this model is failing and temporarily out of rotation; retry later",
            )
        },
        ProviderError::Unsupported { param, message } => UpstreamFailure {
            param: Some(param.clone()),
            ..view(400, "invalid_request_error", "unsupported_parameter", message)
        },
        ProviderError::OverBudget => UpstreamFailure {
            retry_after: Some(Duration::from_secs(1)),
            ..view(503, "api_error", "overloaded", "The gateway is buffering too much upstream data; retry shortly")
        },
        // Nobody reads it: the client is gone. Recorded in the usage row as 499.
        ProviderError::ClientGone => view(499, "api_error", "client_closed", "The client closed the request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers_providers::TimeoutPhase;

    #[test]
    fn maps_statuses() {
        let s = |status| ProviderError::Status { status, message: Some("secret internals?".into()), retry_after: None };
        assert_eq!(describe(&s(500)).status, 502);
        assert!(!describe(&s(500)).message.contains("secret"));
        assert_eq!(describe(&s(400)).status, 400);
        assert_eq!(describe(&s(400)).message, "secret internals?", "client errors relay the provider's explanation");
        assert_eq!(describe(&s(401)).status, 502);
        assert_eq!(describe(&s(429)).status, 429);
        assert_eq!(describe(&ProviderError::Timeout(TimeoutPhase::Idle)).status, 504);
    }
}
