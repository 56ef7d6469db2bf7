//! Failures of the account and key services. Invariant: messages are safe to show to the
//! operator or user who caused them; store details stay in the source chain.

use layers_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("storage failed")]
    Store(#[source] StoreError),
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("not a valid e-mail address")]
    InvalidEmail,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error("the operating system's random number generator failed")]
    Entropy,
    /// This node is doing as much of this as it allows at once: try again in a moment.
    #[error("{0}")]
    Busy(&'static str),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            e if e.is_conflict_on("users_email_key") => ServiceError::EmailTaken,
            StoreError::NotFound { entity } => ServiceError::NotFound(entity),
            e => ServiceError::Store(e),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// An error and every source under it, `: `-separated, for logs (`error = %chain(&err)`): the
/// outermost message alone hides the database's or the socket's reason.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
