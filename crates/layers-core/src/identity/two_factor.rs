//! Two-factor login (TOTP, RFC 6238): set up with a QR code and confirmed by a first code, ten
//! single-use recovery codes, asked for at login once enabled, turned off with the password and
//! a code. Invariants: the secret is stored encrypted (ChaCha20-Poly1305 under a key derived
//! from the pepper); a code is accepted once (its step is recorded atomically, so two nodes
//! cannot both take it); recovery codes are stored as hashes and work once; a login that passed
//! the password but not the second factor holds only a short-lived signed ticket, no session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use layers_domain::identity::totp;
use layers_domain::UserId;
use rand::TryRngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{Client, IdentityError, IdentityResult, IdentityService, NewSession, SessionUser};
use crate::error::ServiceError;
use layers_store::Severity;

/// Recovery codes made at once.
pub const RECOVERY_CODES: usize = 10;
/// How long the password step of a login waits for its second factor.
const TICKET_TTL_MS: u64 = 5 * 60 * 1000;

/// The server's keys for TOTP secrets, one per pepper version. A sealed secret is the version
/// (4 bytes), the nonce (12) and the ciphertext, bound to its account (associated data).
#[derive(Clone)]
pub struct SecretBox {
    keys: std::collections::BTreeMap<i32, ChaCha20Poly1305>,
    current: i32,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("current", &self.current).finish()
    }
}

impl SecretBox {
    pub fn new(keys: &std::collections::BTreeMap<i32, [u8; 32]>, current: i32) -> SecretBox {
        let keys = keys.iter().map(|(v, k)| (*v, ChaCha20Poly1305::new(&(*k).into()))).collect();
        SecretBox { keys, current }
    }

    /// Encrypts `plain` for `user` (bound to the account: another account's row cannot be
    /// swapped in).
    pub(crate) fn seal(&self, user: UserId, plain: &[u8]) -> IdentityResult<Vec<u8>> {
        let cipher = self.keys.get(&self.current).ok_or(ServiceError::Entropy)?;
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload { msg: plain, aad: user.0.as_bytes() };
        let sealed = cipher.encrypt(&nonce, payload).map_err(|_| ServiceError::Entropy)?;
        Ok([&self.current.to_be_bytes()[..], nonce.as_slice(), &sealed].concat())
    }

    /// The secret, or `None` when it cannot be opened (unknown key version, tampered, or another
    /// account's): the caller must then fail closed.
    fn open(&self, user: UserId, sealed: &[u8]) -> Option<Vec<u8>> {
        self.open_bytes(user, sealed).filter(|secret| secret.len() == totp::SECRET_BYTES)
    }

    /// The plain bytes, or `None` when they cannot be opened.
    pub(crate) fn open_bytes(&self, user: UserId, sealed: &[u8]) -> Option<Vec<u8>> {
        let (version, rest) = sealed.split_at_checked(4)?;
        let cipher = self.keys.get(&i32::from_be_bytes(version.try_into().ok()?))?;
        let (nonce, body) = rest.split_at_checked(12)?;
        cipher.decrypt(nonce.into(), Payload { msg: body, aad: user.0.as_bytes() }).ok()
    }
}

/// What the set-up page shows: the secret as a URI (for the QR code) and as text.
#[derive(Debug)]
pub struct Setup {
    pub uri: String,
    pub secret_base32: String,
}

/// Where an account's second factor stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Off,
    /// Set up, waiting for its first code.
    Pending,
    On {
        recovery_codes_left: u32,
    },
}

/// A login past its password, waiting for the second factor.
#[derive(Debug)]
pub struct Ticket(pub String);

/// A recovery code as stored: salted with its account, so a leaked table must be searched
/// account by account, never for all at once.
fn recovery_hash(user: UserId, code: &str) -> Vec<u8> {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    Sha256::digest(format!("recovery/{user}/{normal}").as_bytes()).to_vec()
}

fn fresh_recovery_code() -> IdentityResult<String> {
    let mut bytes = [0u8; 7];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| ServiceError::Entropy)?;
    let text = totp::base32(&bytes).to_ascii_lowercase();
    Ok(format!("{}-{}", &text[..5], &text[5..10]))
}

impl IdentityService {
    fn unix_secs(&self) -> u64 {
        self.clock.unix_ms() / 1000
    }

    pub async fn two_factor_status(&self, user: UserId) -> IdentityResult<Status> {
        Ok(match self.store.two_factor(user).await? {
            None => Status::Off,
            Some(f) if f.enabled_at.is_none() => Status::Pending,
            Some(_) => Status::On { recovery_codes_left: self.store.unused_recovery_codes(user).await? },
        })
    }

    /// A new pending secret (replacing a pending one), asked with the password (a stolen
    /// session must not lock the owner out with a second factor of its own); refused when
    /// two-factor is already on.
    pub async fn begin_two_factor(
        &self,
        s: &SessionUser,
        password: &SecretString,
        client: &Client,
    ) -> IdentityResult<Setup> {
        self.check_password(s, password, client).await?;
        let mut secret = [0u8; totp::SECRET_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(|_| ServiceError::Entropy)?;
        let sealed = self.secrets.seal(s.user_id, &secret)?;
        if !self.store.set_pending_two_factor(s.user_id, &sealed, self.now()).await? {
            return Err(IdentityError::Service(ServiceError::Refused("two-factor login is already on".into())));
        }
        Ok(self.setup_of(&s.email, &secret))
    }

    /// The pending set-up, to show again.
    pub async fn pending_two_factor(&self, s: &SessionUser) -> IdentityResult<Option<Setup>> {
        let Some(f) = self.store.two_factor(s.user_id).await?.filter(|f| f.enabled_at.is_none()) else {
            return Ok(None);
        };
        Ok(self.secrets.open(s.user_id, &f.secret_enc).map(|secret| self.setup_of(&s.email, &secret)))
    }

    fn setup_of(&self, email: &str, secret: &[u8]) -> Setup {
        Setup { uri: totp::otpauth_uri("Layers", email, secret), secret_base32: totp::base32(secret) }
    }

    /// Turns two-factor on with the first code from the app; returns the recovery codes, shown once.
    pub async fn enable_two_factor(&self, s: &SessionUser, code: &str, client: &Client) -> IdentityResult<Vec<String>> {
        let f = self.store.two_factor(s.user_id).await?.filter(|f| f.enabled_at.is_none());
        let secret = f.and_then(|f| self.secrets.open(s.user_id, &f.secret_enc)).ok_or(IdentityError::InvalidLink)?;
        let step = totp::verify(&secret, code, self.unix_secs(), None).ok_or(IdentityError::WrongCode)?;
        let codes = (0..RECOVERY_CODES).map(|_| fresh_recovery_code()).collect::<IdentityResult<Vec<_>>>()?;
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| recovery_hash(s.user_id, c)).collect();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.store.enable_two_factor(s.user_id, step, &hashes, self.now()).await?;
        self.audit(Some(s.user_id), "two_factor_enabled", Severity::Warning, client).await;
        Ok(codes)
    }

    /// Turns two-factor off: the password and a current code (or a recovery code).
    pub async fn disable_two_factor(
        &self,
        s: &SessionUser,
        password: &SecretString,
        code: &str,
        client: &Client,
    ) -> IdentityResult<()> {
        self.check_password(s, password, client).await?;
        if !self.second_factor(s.user_id, code, client).await? {
            return Err(IdentityError::WrongCode);
        }
        self.store.disable_two_factor(s.user_id).await?;
        self.audit(Some(s.user_id), "two_factor_disabled", Severity::Warning, client).await;
        Ok(())
    }

    /// Checks a TOTP code or a recovery code, using it up.
    async fn second_factor(&self, user: UserId, code: &str, client: &Client) -> IdentityResult<bool> {
        let Some(f) = self.store.two_factor(user).await?.filter(|f| f.enabled_at.is_some()) else {
            return Ok(false);
        };
        let last = f.last_step.and_then(|s| u64::try_from(s).ok());
        match self.secrets.open(user, &f.secret_enc) {
            Some(secret) => {
                if let Some(step) = totp::verify(&secret, code, self.unix_secs(), last) {
                    return Ok(self.store.use_totp_step(user, i64::try_from(step).unwrap_or(i64::MAX)).await?);
                }
            }
            // Fail closed: no code is accepted for a secret that does not open (recovery
            // codes still work).
            None => {
                tracing::error!(user_id = %user, "a two-factor secret could not be opened; only recovery codes work")
            }
        }
        let looks_like_recovery = code.chars().filter(char::is_ascii_alphanumeric).count() == 10;
        if looks_like_recovery && self.store.use_recovery_code(user, &recovery_hash(user, code), self.now()).await? {
            self.audit(Some(user), "recovery_code_used", Severity::Warning, client).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// The ticket of a login whose password was right, for its second step.
    pub(super) fn ticket_for(&self, user: UserId) -> Ticket {
        let expires = self.clock.unix_ms() + TICKET_TTL_MS;
        let mut body = user.0.as_bytes().to_vec();
        body.extend_from_slice(&expires.to_be_bytes());
        let tag = self.tag("2fa-ticket/", &body).unwrap_or_default();
        body.extend_from_slice(&tag);
        Ticket(URL_SAFE_NO_PAD.encode(body))
    }

    fn ticket_user(&self, ticket: &str) -> Option<UserId> {
        let raw = URL_SAFE_NO_PAD.decode(ticket).ok()?;
        let (body, tag) = raw.split_at_checked(24)?;
        if !self.tag_matches("2fa-ticket/", body, tag) {
            return None;
        }
        let expires = u64::from_be_bytes(body[16..24].try_into().ok()?);
        if self.clock.unix_ms() > expires {
            return None;
        }
        Some(UserId(uuid::Uuid::from_slice(&body[..16]).ok()?))
    }

    /// The second step of a login: a TOTP code or a recovery code, then the session.
    pub async fn complete_login(&self, ticket: &str, code: &str, client: &Client) -> IdentityResult<NewSession> {
        let user = self.ticket_user(ticket).ok_or(IdentityError::InvalidLink)?;
        let subject = format!("2fa:{user}");
        if let Err(throttled) = self.throttle.begin(&subject, client.ip) {
            return Err(IdentityError::Throttled(throttled));
        }
        if !self.second_factor(user, code, client).await? {
            self.audit(Some(user), "two_factor_failed", Severity::Warning, client).await;
            return Err(IdentityError::WrongCode);
        }
        self.throttle.succeeded(&subject, client.ip);
        let session = self.open_session(user, client).await?;
        self.audit(Some(user), "login_succeeded", Severity::Info, client).await;
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_account_and_after_a_pepper_rotation() {
        let old: std::collections::BTreeMap<i32, [u8; 32]> = [(1, [1; 32])].into_iter().collect();
        let (alice, bob) = (UserId::random(), UserId::random());
        let sealed = SecretBox::new(&old, 1).seal(alice, &[9; totp::SECRET_BYTES]).unwrap();
        let rotated: std::collections::BTreeMap<i32, [u8; 32]> = [(1, [1; 32]), (2, [2; 32])].into_iter().collect();
        let now = SecretBox::new(&rotated, 2);
        assert_eq!(now.open(alice, &sealed), Some(vec![9; totp::SECRET_BYTES]), "the old version still opens");
        assert_eq!(now.open(bob, &sealed), None, "bound to its account");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(now.open(alice, &tampered), None);
        let dropped: std::collections::BTreeMap<i32, [u8; 32]> = [(2, [2; 32])].into_iter().collect();
        assert_eq!(
            SecretBox::new(&dropped, 2).open(alice, &sealed),
            None,
            "an unknown version does not open: the caller fails closed"
        );
    }
}
