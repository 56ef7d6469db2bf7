//! Failures of an upstream call. Invariant: every error knows who is to blame and whether a
//! retry (or the next route) could succeed; that decides retries, fallbacks and who pays.

use std::time::Duration;

/// Who caused a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The provider failed or is overloaded.
    Upstream,
    /// The request itself is wrong; another route would refuse it too.
    Client,
    /// The gateway or its configuration (e.g. a rejected operator key).
    Internal,
}

/// Where a timeout struck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
    Total,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not connect to the provider")]
    Connect(#[source] reqwest::Error),
    #[error("the provider timed out ({0:?})")]
    Timeout(TimeoutPhase),
    #[error("the provider answered {status}")]
    Status {
        status: u16,
        /// The provider's own message, relayed only when the client is to blame.
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("the provider sent an invalid response: {0}")]
    Protocol(&'static str),
    #[error("the provider failed mid-stream")]
    MidStream { message: Option<String> },
    #[error("transport error talking to the provider")]
    Transport(#[source] reqwest::Error),
    #[error("every route of the model is out of rotation after repeated failures")]
    Unavailable { retry_after: Option<Duration> },
    #[error("parameter {param} is not supported by this provider")]
    Unsupported { param: String, message: String },
    /// This node holds as much upstream data as its budget allows (`limits.upstream_buffer_mb`).
    #[error("the node's budget for upstream data is spent")]
    OverBudget,
    /// The client went away before any provider answered: no further attempt is made.
    #[error("the client went away before a provider answered")]
    ClientGone,
}

impl ProviderError {
    pub fn blame(&self) -> Blame {
        match self {
            ProviderError::Status { status, .. } => match status {
                400 | 413 | 422 => Blame::Client,
                // A rejected operator key or an upstream model id the provider does not know.
                401 | 403 | 404 => Blame::Internal,
                _ => Blame::Upstream,
            },
            ProviderError::Unsupported { .. } | ProviderError::ClientGone => Blame::Client,
            _ => Blame::Upstream,
        }
    }

    /// Whether the same request could succeed on a retry or on another route.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::Connect(_) | ProviderError::Timeout(_) | ProviderError::Transport(_) => true,
            ProviderError::Status { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
            ProviderError::Protocol(_)
            | ProviderError::MidStream { .. }
            | ProviderError::Unsupported { .. }
            | ProviderError::Unavailable { .. }
            | ProviderError::ClientGone
            | ProviderError::OverBudget => false,
        }
    }

    /// Maps a reqwest failure to the phase it happened in.
    pub fn from_send(err: reqwest::Error) -> ProviderError {
        if err.is_connect() {
            ProviderError::Connect(err)
        } else if err.is_timeout() {
            ProviderError::Timeout(TimeoutPhase::FirstByte)
        } else {
            ProviderError::Transport(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blame_and_retry() {
        let status = |s| ProviderError::Status { status: s, message: None, retry_after: None };
        assert_eq!(status(400).blame(), Blame::Client);
        assert!(!status(400).retryable());
        assert_eq!(status(401).blame(), Blame::Internal);
        assert_eq!(status(503).blame(), Blame::Upstream);
        assert!(status(529).retryable());
        assert!(status(429).retryable());
        assert!(ProviderError::Timeout(TimeoutPhase::Idle).retryable());
    }
}
