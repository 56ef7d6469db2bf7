//! The API key format: `lyr_live_sk_` / `lyr_test_sk_`, 192 random bits in base62, then a
//! base62 CRC32 of everything before it. Invariant: a value of type [`ApiKey`] is well-formed,
//! so a typo is rejected here, before any lookup.

use std::fmt;

use crate::base62;

pub const LIVE_PREFIX: &str = "lyr_live_sk_";
pub const TEST_PREFIX: &str = "lyr_test_sk_";
/// Random bytes in a key's secret (192 bits, SPEC §3).
pub const SECRET_BYTES: usize = 24;
const SECRET_CHARS: usize = base62::width_for_bytes(SECRET_BYTES);
const CHECKSUM_CHARS: usize = base62::width_for_bytes(4);
const PREFIX_LEN: usize = 12;
/// Total length of a key: prefix, secret, checksum.
pub const KEY_LEN: usize = PREFIX_LEN + SECRET_CHARS + CHECKSUM_CHARS;
/// Characters of the secret shown in a key's display prefix.
const DISPLAY_SECRET_CHARS: usize = 4;

/// Whether a key is billed (`live`) or served by the sandbox (`test`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnv {
    Live,
    Test,
}

/// A well-formed API key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    env: KeyEnv,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("key does not start with lyr_live_sk_ or lyr_test_sk_")]
    Prefix,
    #[error("key has the wrong length")]
    Length,
    #[error("key contains characters outside base62")]
    Charset,
    #[error("key checksum does not match")]
    Checksum,
}

// === impl KeyEnv ===

impl KeyEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnv::Live => "live",
            KeyEnv::Test => "test",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            KeyEnv::Live => LIVE_PREFIX,
            KeyEnv::Test => TEST_PREFIX,
        }
    }
}

impl std::str::FromStr for KeyEnv {
    type Err = UnknownKeyEnv;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(KeyEnv::Live),
            "test" => Ok(KeyEnv::Test),
            _ => Err(UnknownKeyEnv),
        }
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("environment must be live or test")]
pub struct UnknownKeyEnv;

impl fmt::Display for KeyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ApiKey ===

impl ApiKey {
    /// Builds a key from `SECRET_BYTES` bytes drawn by the caller from the OS CSPRNG.
    pub fn from_entropy(env: KeyEnv, entropy: &[u8; SECRET_BYTES]) -> ApiKey {
        // The width is computed for SECRET_BYTES, so the encoding always fits.
        let secret = base62::encode_fixed(entropy, SECRET_CHARS).unwrap_or_default();
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(env.prefix());
        text.push_str(&secret);
        let sum = checksum(&text);
        text.push_str(&sum);
        ApiKey { env, text }
    }

    /// Parses untrusted input. Cheap, and touches nothing but the string.
    pub fn parse(s: &str) -> Result<ApiKey, KeyFormatError> {
        let env = if s.starts_with(LIVE_PREFIX) {
            KeyEnv::Live
        } else if s.starts_with(TEST_PREFIX) {
            KeyEnv::Test
        } else {
            return Err(KeyFormatError::Prefix);
        };
        if s.len() != KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        let rest = &s[PREFIX_LEN..];
        if !base62::is_base62(rest) {
            return Err(KeyFormatError::Charset);
        }
        let (body, sum) = s.split_at(KEY_LEN - CHECKSUM_CHARS);
        if checksum(body) != sum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(ApiKey { env, text: s.to_owned() })
    }

    pub fn env(&self) -> KeyEnv {
        self.env
    }

    /// The full key. Only for hashing and for showing once at creation.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `lyr_live_sk_ab12`: safe to store and show.
    pub fn display_prefix(&self) -> &str {
        &self.text[..PREFIX_LEN + DISPLAY_SECRET_CHARS]
    }

    /// The last four characters: safe to store and show.
    pub fn last4(&self) -> &str {
        &self.text[KEY_LEN - 4..]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…{})", self.display_prefix(), self.last4())
    }
}

fn checksum(body: &str) -> String {
    let crc = crc32fast::hash(body.as_bytes());
    base62::encode_fixed(&crc.to_be_bytes(), CHECKSUM_CHARS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(env: KeyEnv, seed: u8) -> ApiKey {
        ApiKey::from_entropy(env, &[seed; SECRET_BYTES])
    }

    #[test]
    fn shape_of_a_generated_key() {
        let k = key(KeyEnv::Live, 7);
        assert_eq!(k.expose().len(), KEY_LEN);
        assert_eq!(KEY_LEN, 51);
        assert!(k.expose().starts_with("lyr_live_sk_"));
        assert_eq!(k.display_prefix().len(), 16);
        assert_eq!(k.last4(), &k.expose()[47..]);
        let t = key(KeyEnv::Test, 7);
        assert!(t.expose().starts_with("lyr_test_sk_"));
        assert_eq!(t.env(), KeyEnv::Test);
    }

    #[test]
    fn debug_hides_the_secret() {
        let k = key(KeyEnv::Live, 9);
        let shown = format!("{k:?}");
        assert!(!shown.contains(&k.expose()[16..40]));
    }

    #[test]
    fn rejects_malformed_keys() {
        let good = key(KeyEnv::Live, 1);
        let s = good.expose();
        assert_eq!(ApiKey::parse("sk-abc").unwrap_err(), KeyFormatError::Prefix);
        assert_eq!(ApiKey::parse("lyr_live_sk_short").unwrap_err(), KeyFormatError::Length);
        let mut bad_char = s.to_owned();
        bad_char.replace_range(20..21, "-");
        assert_eq!(ApiKey::parse(&bad_char).unwrap_err(), KeyFormatError::Charset);
        // Changing the environment invalidates the checksum.
        let swapped = s.replacen("lyr_live_sk_", "lyr_test_sk_", 1);
        assert_eq!(ApiKey::parse(&swapped).unwrap_err(), KeyFormatError::Checksum);
        assert_eq!(ApiKey::parse(s).unwrap(), good);
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::array::uniform24(any::<u8>()), live in any::<bool>()) {
            let env = if live { KeyEnv::Live } else { KeyEnv::Test };
            let k = ApiKey::from_entropy(env, &bytes);
            prop_assert_eq!(ApiKey::parse(k.expose()).unwrap(), k);
        }

        #[test]
        fn any_single_typo_is_caught(bytes in proptest::array::uniform24(any::<u8>()),
                                     pos in 12usize..KEY_LEN, digit in 0usize..62) {
            let k = ApiKey::from_entropy(KeyEnv::Live, &bytes);
            let mut s = k.expose().as_bytes().to_vec();
            let replacement = base62::ALPHABET[digit];
            prop_assume!(s[pos] != replacement);
            s[pos] = replacement;
            let typo = String::from_utf8(s).unwrap();
            prop_assert_eq!(ApiKey::parse(&typo).unwrap_err(), KeyFormatError::Checksum);
        }
    }
}
