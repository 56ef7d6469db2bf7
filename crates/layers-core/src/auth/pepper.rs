//! Versioned peppers and the keyed hash of API keys. Invariant: the stored hash of a key is
//! HMAC-SHA-256(pepper[v], key) for the version v stored beside it; a database alone cannot
//! confirm a guessed key.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use layers_domain::ApiKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub type KeyHash = [u8; 32];

/// Peppers by version; new keys use `current`.
#[derive(Clone)]
pub struct Peppers {
    current: i32,
    /// Pre-keyed HMAC states, cloned per use (saves the key schedule on the hot path).
    macs: BTreeMap<i32, Hmac<Sha256>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error("no pepper configured for the current version {0}")]
    MissingCurrent(i32),
    #[error("pepper version {0} is shorter than 32 bytes")]
    TooShort(i32),
}

impl std::fmt::Debug for Peppers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peppers").field("current", &self.current).field("versions", &self.macs.keys()).finish()
    }
}

impl Peppers {
    pub fn new(current: i32, secrets: &BTreeMap<i32, SecretString>) -> Result<Peppers, PepperError> {
        let mut macs = BTreeMap::new();
        for (version, secret) in secrets {
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < 32 {
                return Err(PepperError::TooShort(*version));
            }
            // HMAC accepts keys of any length, so this cannot fail.
            if let Ok(mac) = Hmac::<Sha256>::new_from_slice(bytes) {
                macs.insert(*version, mac);
            }
        }
        if !macs.contains_key(&current) {
            return Err(PepperError::MissingCurrent(current));
        }
        Ok(Peppers { current, macs })
    }

    pub fn current_version(&self) -> i32 {
        self.current
    }

    pub fn hash(&self, version: i32, key: &ApiKey) -> Option<KeyHash> {
        let mut mac = self.macs.get(&version)?.clone();
        mac.update(key.expose().as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    pub fn hash_current(&self, key: &ApiKey) -> KeyHash {
        self.hash(self.current, key).unwrap_or_default()
    }

    /// A key for another purpose (`label`) derived from the current pepper, so one configured
    /// secret, shared by every node, also keys CSRF tokens; it cannot be turned back into the
    /// pepper or into another label's key.
    pub fn subkey(&self, label: &str) -> [u8; 32] {
        self.subkey_of(self.current, label).unwrap_or([0; 32])
    }

    /// The `label` key of pepper `version` (to open what an older pepper sealed).
    pub fn subkey_of(&self, version: i32, label: &str) -> Option<[u8; 32]> {
        let mut mac = self.macs.get(&version)?.clone();
        mac.update(b"layers/subkey/");
        mac.update(label.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// Every configured version, the current one included.
    pub fn versions(&self) -> impl Iterator<Item = i32> + '_ {
        self.macs.keys().copied()
    }

    /// Versions other than the current one, newest first.
    pub fn older_versions(&self) -> impl Iterator<Item = i32> + '_ {
        self.macs.keys().rev().copied().filter(move |v| *v != self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers_domain::KeyEnv;

    fn peppers(current: i32) -> Peppers {
        let mut m = BTreeMap::new();
        m.insert(1, SecretString::from("a".repeat(32)));
        m.insert(2, SecretString::from("b".repeat(32)));
        Peppers::new(current, &m).unwrap()
    }

    #[test]
    fn versions_hash_differently_and_deterministically() {
        let key = ApiKey::from_entropy(KeyEnv::Live, &[3; 24]);
        let p = peppers(2);
        assert_eq!(p.hash_current(&key), p.hash(2, &key).unwrap());
        assert_ne!(p.hash(1, &key), p.hash(2, &key));
        assert_eq!(p.hash(1, &key), peppers(1).hash(1, &key));
        assert_eq!(p.older_versions().collect::<Vec<_>>(), vec![1]);
        assert!(p.hash(9, &key).is_none());
    }

    #[test]
    fn refuses_short_or_missing_peppers() {
        let mut m = BTreeMap::new();
        m.insert(1, SecretString::from("short"));
        assert!(matches!(Peppers::new(1, &m), Err(PepperError::TooShort(1))));
        m.insert(1, SecretString::from("x".repeat(40)));
        assert!(matches!(Peppers::new(2, &m), Err(PepperError::MissingCurrent(2))));
    }
}
