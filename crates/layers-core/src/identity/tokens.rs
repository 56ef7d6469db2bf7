//! Opaque secrets handed to browsers and inboxes (session cookies, e-mailed links): 256 random
//! bits from the OS, base64url; only their SHA-256 is stored, so a copy of the database logs
//! nobody in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::error::{ServiceError, ServiceResult};

/// A fresh token: what the browser or the e-mail gets.
pub fn fresh() -> ServiceResult<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| ServiceError::Entropy)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` could be one of ours (43 base64url characters), before any lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let (a, b) = (fresh().unwrap(), fresh().unwrap());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert_eq!(digest(&a).len(), 32);
        assert_ne!(digest(&a), a.as_bytes());
        assert!(!well_formed("short") && !well_formed(&format!("{}!", &a[..42])));
    }
}
