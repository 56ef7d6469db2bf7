//! Typed identifiers, so a user id cannot be passed where a key id belongs.
//! Invariant: a [`RequestId`] only holds characters that are safe in headers and logs.

use std::fmt;

use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id (UUID v4 from the OS CSPRNG).
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An account.
    UserId
);
uuid_id!(
    /// An API key record (not the key itself).
    KeyId
);

/// The id of one API request: generated, or taken from a well-formed `x-request-id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

const MAX_REQUEST_ID_LEN: usize = 128;

impl RequestId {
    /// Accepts a client-supplied id when it is 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(s: &str) -> Option<RequestId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_REQUEST_ID_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        ok.then(|| RequestId(s.to_owned()))
    }

    /// An id from generated base62 text, prefixed `req_`.
    pub fn from_generated(random_base62: &str) -> RequestId {
        RequestId(format!("req_{random_base62}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sanitised() {
        assert!(RequestId::parse("abc-123_x.y:z").is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a\r\nSet-Cookie: x").is_none());
        assert!(RequestId::parse(&"a".repeat(129)).is_none());
        assert_eq!(RequestId::from_generated("xyz").as_str(), "req_xyz");
    }
}
