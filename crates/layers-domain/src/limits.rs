//! Input limits of a chat request (SPEC §2.3). Invariant: a violation always names the exact
//! field (`messages`, `messages[3].content`) so the client can fix it.

/// Configurable input limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_messages: usize,
    pub max_message_chars: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits { max_body_bytes: 1024 * 1024, max_messages: 100, max_message_chars: 100_000 }
    }
}

/// A limit a request broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitViolation {
    #[error("messages must not be empty")]
    NoMessages,
    #[error("too many messages: {count} (at most {max})")]
    TooManyMessages { count: usize, max: usize },
    #[error("message {index} is too long: {chars} characters (at most {max})")]
    MessageTooLong { index: usize, chars: usize, max: usize },
}

impl LimitViolation {
    /// The request field to blame, in OpenAI's `param` notation.
    pub fn param(&self) -> String {
        match self {
            LimitViolation::NoMessages | LimitViolation::TooManyMessages { .. } => "messages".to_owned(),
            LimitViolation::MessageTooLong { index, .. } => format!("messages[{index}].content"),
        }
    }
}

impl RequestLimits {
    pub fn check_message_count(&self, count: usize) -> Result<(), LimitViolation> {
        if count == 0 {
            return Err(LimitViolation::NoMessages);
        }
        if count > self.max_messages {
            return Err(LimitViolation::TooManyMessages { count, max: self.max_messages });
        }
        Ok(())
    }

    /// `chars` counts Unicode scalar values of all text in message `index`.
    pub fn check_message_chars(&self, index: usize, chars: usize) -> Result<(), LimitViolation> {
        if chars > self.max_message_chars {
            return Err(LimitViolation::MessageTooLong { index, chars, max: self.max_message_chars });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field() {
        let l = RequestLimits::default();
        assert_eq!(l.check_message_count(0).unwrap_err().param(), "messages");
        assert!(l.check_message_count(100).is_ok());
        assert_eq!(l.check_message_count(101).unwrap_err().param(), "messages");
        assert!(l.check_message_chars(3, 100_000).is_ok());
        let err = l.check_message_chars(3, 100_001).unwrap_err();
        assert_eq!(err.param(), "messages[3].content");
        assert!(err.to_string().contains("100001"));
    }
}
