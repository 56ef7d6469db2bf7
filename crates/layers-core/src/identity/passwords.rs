//! Password hashes: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), computed off
//! the async threads. Invariant: checking a password for an account that has no hash (or does
//! not exist) costs the same as for one that has (a dummy hash is verified instead), so the
//! time of a login does not tell whether an e-mail is registered.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ServiceError, ServiceResult};

/// OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Stored instead of a hash when an account must not be entered by password: no password
/// verifies against it (it is not a PHC string).
pub const UNUSABLE: &str = "!unusable";

/// Hashes at most this many passwords at once on a node (each takes 19 MiB for tens of
/// milliseconds), so a flood of logins queues instead of taking the memory.
const CONCURRENT: usize = 4;

#[derive(Clone, Debug)]
pub struct Passwords {
    permits: Arc<tokio::sync::Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords { permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT)) }
    }
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's bounds.
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &[u8]) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password, &salt).ok().map(|h| h.to_string())
}

/// A hash of a random password nobody knows, verified when the account has no hash.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default())
}

fn verify_now(password: &[u8], hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

impl Passwords {
    /// The PHC string of a new password.
    pub async fn hash(&self, password: &SecretString) -> ServiceResult<String> {
        let password = password.expose_secret().as_bytes().to_vec();
        self.blocking(move || hash_now(&password)).await?.ok_or(ServiceError::Entropy)
    }

    /// Whether `password` matches `hash`; with no hash, the same work against a dummy and `false`.
    pub async fn verify(&self, password: &SecretString, hash: Option<&str>) -> ServiceResult<bool> {
        let password = password.expose_secret().as_bytes().to_vec();
        // An unusable or unreadable hash costs the same work as a real one.
        let (hash, real) = match hash.filter(|h| PasswordHash::new(h).is_ok()) {
            Some(h) => (h.to_owned(), true),
            None => (dummy_hash().to_owned(), false),
        };
        let matched = self.blocking(move || verify_now(&password, &hash)).await?;
        Ok(real && matched)
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> ServiceResult<T> {
        let _permit = self.permits.acquire().await.map_err(|_| ServiceError::Refused("shutting down".into()))?;
        tokio::task::spawn_blocking(work).await.map_err(|_| ServiceError::Refused("password check failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let p = Passwords::default();
        let secret = SecretString::from("correct horse battery staple");
        let hash = p.hash(&secret).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(p.verify(&secret, Some(&hash)).await.unwrap());
        assert!(!p.verify(&SecretString::from("correct horse battery stapler"), Some(&hash)).await.unwrap());
        assert!(!p.verify(&secret, None).await.unwrap(), "no hash never matches");
        assert!(!p.verify(&secret, Some("not a hash")).await.unwrap());
        assert_ne!(hash, p.hash(&secret).await.unwrap(), "a fresh salt each time");
    }
}
