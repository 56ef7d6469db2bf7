//! Every error code the API answers with, and what each means on the wire: its HTTP status,
//! its OpenAI error type, its Anthropic status and type, and whether a retry can help (SPEC
//! §2.4). Invariant: a status or an error type is decided here and nowhere else.

/// An error code of the API (`error.code` in a response body, `error_code` in a usage row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // Authentication and the caller's address.
    MissingApiKey,
    InvalidApiKeyFormat,
    InvalidApiKey,
    ApiKeyDeactivated,
    ApiKeyExpired,
    AccountSuspended,
    IpBlocked,
    OriginNotAllowed,
    // The request itself.
    InvalidValue,
    InvalidJson,
    InvalidBody,
    InvalidRequest,
    UnsupportedParameter,
    ModelNotSupported,
    RequestTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    NotFound,
    ModelNotFound,
    GenerationNotFound,
    MethodNotAllowed,
    // Money and limits.
    RequestTooExpensive,
    InsufficientCredits,
    KeySpendLimitReached,
    SpendLimitExceeded,
    RateLimitExceeded,
    TestKeyDailyLimit,
    // Upstream providers.
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamRejectedRequest,
    UpstreamAuthFailed,
    UpstreamModelUnavailable,
    UpstreamRateLimited,
    UpstreamOverloaded,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamUnavailable,
    ClientClosed,
    // This node.
    Overloaded,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MissingApiKey => "missing_api_key",
            InvalidApiKeyFormat => "invalid_api_key_format",
            InvalidApiKey => "invalid_api_key",
            ApiKeyDeactivated => "api_key_deactivated",
            ApiKeyExpired => "api_key_expired",
            AccountSuspended => "account_suspended",
            IpBlocked => "ip_blocked",
            OriginNotAllowed => "origin_not_allowed",
            InvalidValue => "invalid_value",
            InvalidJson => "invalid_json",
            InvalidBody => "invalid_body",
            InvalidRequest => "invalid_request",
            UnsupportedParameter => "unsupported_parameter",
            ModelNotSupported => "model_not_supported",
            RequestTooLarge => "request_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            RequestTimeout => "request_timeout",
            NotFound => "not_found",
            ModelNotFound => "model_not_found",
            GenerationNotFound => "generation_not_found",
            MethodNotAllowed => "method_not_allowed",
            RequestTooExpensive => "request_too_expensive",
            InsufficientCredits => "insufficient_credits",
            KeySpendLimitReached => "key_spend_limit_reached",
            SpendLimitExceeded => "spend_limit_exceeded",
            RateLimitExceeded => "rate_limit_exceeded",
            TestKeyDailyLimit => "test_key_daily_limit",
            UpstreamUnreachable => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            UpstreamRejectedRequest => "upstream_rejected_request",
            UpstreamAuthFailed => "upstream_auth_failed",
            UpstreamModelUnavailable => "upstream_model_unavailable",
            UpstreamRateLimited => "upstream_rate_limited",
            UpstreamOverloaded => "upstream_overloaded",
            UpstreamError => "upstream_error",
            UpstreamInvalidResponse => "upstream_invalid_response",
            UpstreamUnavailable => "upstream_unavailable",
            ClientClosed => "client_closed",
            Overloaded => "overloaded",
            ServiceUnavailable => "service_unavailable",
            InternalError => "internal_error",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidValue
            | InvalidJson
            | InvalidBody
            | InvalidRequest
            | UnsupportedParameter
            | ModelNotSupported
            | RequestTooExpensive
            | UpstreamRejectedRequest => 400,
            MissingApiKey | InvalidApiKeyFormat | InvalidApiKey | ApiKeyDeactivated | ApiKeyExpired => 401,
            InsufficientCredits | KeySpendLimitReached => 402,
            AccountSuspended | IpBlocked | OriginNotAllowed => 403,
            NotFound | ModelNotFound | GenerationNotFound => 404,
            MethodNotAllowed => 405,
            RequestTimeout => 408,
            RequestTooLarge => 413,
            UnsupportedMediaType => 415,
            SpendLimitExceeded | RateLimitExceeded | TestKeyDailyLimit | UpstreamRateLimited => 429,
            // Recorded in usage rows only: nobody is there to read it.
            ClientClosed => 499,
            InternalError => 500,
            UpstreamUnreachable
            | UpstreamAuthFailed
            | UpstreamModelUnavailable
            | UpstreamError
            | UpstreamInvalidResponse => 502,
            UpstreamOverloaded | UpstreamUnavailable | Overloaded | ServiceUnavailable => 503,
            UpstreamTimeout => 504,
        }
    }

    /// The OpenAI error type (`error.type`).
    pub fn error_type(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MissingApiKey | InvalidApiKeyFormat | InvalidApiKey | ApiKeyDeactivated | ApiKeyExpired => {
                "authentication_error"
            }
            AccountSuspended | IpBlocked | OriginNotAllowed => "permission_error",
            InsufficientCredits | KeySpendLimitReached => "insufficient_quota",
            SpendLimitExceeded | TestKeyDailyLimit | UpstreamRateLimited => "rate_limit_error",
            // Which limit: `requests` or `tokens` (the caller says which, see `ApiError`).
            RateLimitExceeded => "requests",
            UpstreamUnreachable
            | UpstreamTimeout
            | UpstreamAuthFailed
            | UpstreamModelUnavailable
            | UpstreamOverloaded
            | UpstreamError
            | UpstreamInvalidResponse
            | UpstreamUnavailable
            | ClientClosed
            | Overloaded
            | ServiceUnavailable
            | InternalError => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// Anthropic's status and error type for the code, on `/v1/messages`.
    pub fn anthropic(self) -> (u16, &'static str) {
        use ErrorCode::*;
        if matches!(self, UpstreamOverloaded | UpstreamUnavailable) {
            return (529, "overloaded_error");
        }
        let status = self.status();
        let kind = match status {
            400 | 405 | 408 | 415 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        };
        (status, kind)
    }

    /// `x-should-retry` for the official SDKs: `Some(false)` where a retry cannot help.
    pub fn should_retry(self) -> Option<bool> {
        match self.status() {
            400 | 401 | 402 | 403 | 404 | 405 | 413 | 415 => Some(false),
            // A spend limit or a test key's day does not lift within the SDK's retry window.
            429 if matches!(self, ErrorCode::SpendLimitExceeded | ErrorCode::TestKeyDailyLimit) => Some(false),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_one_status_type_and_name() {
        assert_eq!(ErrorCode::InsufficientCredits.status(), 402);
        assert_eq!(ErrorCode::InsufficientCredits.anthropic(), (402, "billing_error"));
        assert_eq!(ErrorCode::UpstreamOverloaded.anthropic(), (529, "overloaded_error"));
        assert_eq!(ErrorCode::Overloaded.status(), 503);
        assert_eq!(ErrorCode::RequestTimeout.status(), 408);
        assert_eq!(ErrorCode::IpBlocked.error_type(), "permission_error");
        assert_eq!(ErrorCode::SpendLimitExceeded.should_retry(), Some(false));
        assert_eq!(ErrorCode::RateLimitExceeded.should_retry(), None);
        assert_eq!(ErrorCode::UpstreamError.to_string(), "upstream_error");
    }
}
