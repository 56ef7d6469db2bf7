//! How people get into their accounts (SPEC §6.1, §6.2): sign-up with a confirmed e-mail,
//! login with throttling, server-side sessions, password reset and change, and CSRF tokens for
//! the pages. Invariants: no answer or timing tells whether an e-mail is registered (the same
//! words, an Argon2 check either way, mail sent in the background); only hashes of passwords,
//! session tokens and e-mailed links are stored; a reset or a password change ends every
//! session; every step is audited with the client's address and user agent, and no e-mail,
//! password or token reaches a log or an audit row.

pub mod email_change;
pub mod export;
pub mod letters;
pub mod mailer;
pub mod oidc;
mod outgoing;
pub mod passwords;
pub mod smtp;
pub mod throttle;
pub mod tokens;
pub mod two_factor;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use layers_domain::identity::password::{self, Weak};
use layers_domain::identity::session::{SessionPolicy, SessionState, SessionTimes};
use layers_domain::{Tier, UserId};
use layers_store::{EmailPurpose, EmailToken, NewUser, Session, Severity, Store, UserStatus};
use secrecy::SecretString;
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::normalize_email;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::ServiceError;
use mailer::Mailer;
use passwords::Passwords;
use throttle::{LoginThrottle, ThrottleSettings, Throttled};

/// The account rules of a deployment.
#[derive(Clone, Debug)]
pub struct IdentitySettings {
    /// Where links in e-mails point (`https://layers.example`, no trailing slash).
    pub public_url: String,
    pub sessions: SessionPolicy,
    pub throttle: ThrottleSettings,
    /// How long a confirmation link works.
    pub confirm_ttl: Duration,
    /// How long a password-reset link works.
    pub reset_ttl: Duration,
    /// "Continue with Google" (or another OpenID Connect issuer), when configured.
    pub oidc: Option<oidc::OidcSettings>,
}

impl IdentitySettings {
    pub fn new(public_url: &str) -> IdentitySettings {
        IdentitySettings {
            public_url: public_url.trim_end_matches('/').to_owned(),
            sessions: SessionPolicy::default(),
            throttle: ThrottleSettings::default(),
            confirm_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
            oidc: None,
        }
    }
}

/// Who is at the browser, for throttling and the audit trail.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// Why an account action was refused; each maps to one message on the page.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("not a valid e-mail address")]
    InvalidEmail,
    #[error("{}", .0.message())]
    WeakPassword(Weak),
    /// The same words whether the e-mail is unknown or the password wrong.
    #[error("incorrect e-mail or password")]
    BadCredentials,
    /// Only said to someone who gave the right password.
    #[error("the e-mail address is not confirmed yet")]
    Unconfirmed,
    #[error("too many attempts")]
    Throttled(Throttled),
    #[error("the account is suspended")]
    Suspended,
    /// Unknown, used or expired.
    #[error("the link is invalid or has expired")]
    InvalidLink,
    #[error("the password is not correct")]
    WrongPassword,
    /// An account without a password, whose login is older than the re-authentication window.
    #[error("log in again to do this")]
    ReauthRequired,
    /// A two-factor or recovery code that is wrong or already used.
    #[error("the code is not correct")]
    WrongCode,
    /// No identity provider is configured.
    #[error("sign-in with an identity provider is not configured")]
    OidcUnavailable,
    /// The provider's answer failed a check (logged with the reason).
    #[error("the identity provider's answer was refused")]
    OidcRefused,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<layers_store::StoreError> for IdentityError {
    fn from(err: layers_store::StoreError) -> Self {
        IdentityError::Service(err.into())
    }
}

pub type IdentityResult<T> = Result<T, IdentityError>;

/// A session just opened: the token goes into the cookie and nowhere else.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub user_id: UserId,
    pub session_id: Uuid,
}

/// The person behind a live session cookie.
#[derive(Clone, Debug)]
pub struct SessionUser {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub email: String,
    pub tier: Tier,
    pub times: SessionTimes,
}

/// One of the account's sessions, as the settings page lists it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: Uuid,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

/// One event of the account's audit trail, as the settings page lists it.
#[derive(Clone, Debug)]
pub struct Activity {
    pub kind: String,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub at: OffsetDateTime,
}

/// Skip writing `last_seen_at` when it was written this recently.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct IdentityService {
    store: Arc<dyn Store>,
    mailer: Mailer,
    passwords: Passwords,
    throttle: LoginThrottle,
    audit: Audit,
    clock: Clock,
    settings: IdentitySettings,
    /// Keyed once with the CSRF key (derived from the pepper every node shares); also signs
    /// the tickets of logins waiting for their second factor.
    csrf: Option<Hmac<Sha256>>,
    /// Encrypts TOTP secrets at rest.
    secrets: two_factor::SecretBox,
    oidc: Option<oidc::Oidc>,
    /// Links, letters and the work done after an answer.
    outgoing: outgoing::Outgoing,
}

/// The keys of the accounts, derived from the pepper every node shares.
#[derive(Clone)]
pub struct IdentityKeys {
    pub csrf: [u8; 32],
    /// The TOTP-sealing key of each pepper version: secrets sealed under an older pepper still
    /// open after a rotation.
    pub totp: std::collections::BTreeMap<i32, [u8; 32]>,
    /// The version new secrets are sealed with.
    pub totp_current: i32,
}

impl std::fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKeys([redacted])")
    }
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    Session(NewSession),
    /// Two-factor is on: the code is asked next, with this ticket.
    SecondFactor(two_factor::Ticket),
}

impl IdentityService {
    pub fn new(
        store: Arc<dyn Store>,
        mailer: Mailer,
        audit: Audit,
        clock: Clock,
        settings: IdentitySettings,
        keys: IdentityKeys,
        tasks: crate::tasks::Tasks,
    ) -> IdentityService {
        let outgoing = outgoing::Outgoing {
            store: store.clone(),
            mailer: mailer.clone(),
            audit: audit.clone(),
            clock: clock.clone(),
            tasks,
            public_url: settings.public_url.clone(),
            confirm_ttl: settings.confirm_ttl,
            reset_ttl: settings.reset_ttl,
        };
        let oidc = settings.oidc.clone().and_then(|o| {
            oidc::Oidc::new(o)
                .map_err(|e| tracing::error!(error = %e, "the OpenID Connect client could not be built"))
                .ok()
        });
        IdentityService {
            outgoing,
            oidc,
            throttle: LoginThrottle::new(settings.throttle, clock.clone()),
            store,
            mailer,
            passwords: Passwords::default(),
            audit,
            clock,
            settings,
            csrf: <Hmac<Sha256> as Mac>::new_from_slice(&keys.csrf).ok(),
            secrets: two_factor::SecretBox::new(&keys.totp, keys.totp_current),
        }
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    fn now(&self) -> OffsetDateTime {
        self.outgoing.now()
    }

    async fn audit(&self, user: Option<UserId>, event: &str, severity: Severity, client: &Client) {
        self.audit.from_client(user, event, json!({}), severity, client.ip, client.user_agent.as_deref()).await;
    }

    /// The audit event of the incident panel's lock-down.
    pub(crate) async fn audit_lock_down(&self, user: UserId, metadata: serde_json::Value, client: &Client) {
        self.audit
            .from_client(
                Some(user),
                "incident_lockdown",
                metadata,
                Severity::Critical,
                client.ip,
                client.user_agent.as_deref(),
            )
            .await;
    }

    /// The audit event of an erased account: its id, and nothing of the person.
    pub(crate) async fn audit_erased(&self, user: UserId, _client: &Client) {
        self.audit.from_client(Some(user), "account_deleted", json!({}), Severity::Warning, None, None).await;
    }

    // === sign-up and confirmation ===

    /// Creates an unconfirmed account and mails its confirmation link. An address that already
    /// has an account gets a note instead; the caller's answer, and its time, are the same
    /// either way (the branch runs after the answer). A few sign-ups per address and window at
    /// most: past them nothing is sent (no mail bombs).
    pub async fn sign_up(&self, email: &str, password: &SecretString, client: &Client) -> IdentityResult<()> {
        let email = normalize_email(email).map_err(|_| IdentityError::InvalidEmail)?;
        password::check(secrecy::ExposeSecret::expose_secret(password)).map_err(IdentityError::WeakPassword)?;
        let hash = self.passwords.hash(password).await?;
        if !self.may_mail(&email, client) {
            return Ok(());
        }
        let (out, client) = (self.outgoing.clone(), client.clone());
        self.outgoing.later("sign-up", async move {
            if out.store.credentials_by_email(&email).await?.is_some() {
                let base = &out.public_url;
                out.mailer.send(letters::already_registered(
                    &email,
                    &format!("{base}/login"),
                    &format!("{base}/forgot-password"),
                ));
                return Ok(());
            }
            let now = out.now();
            let user = NewUser { id: UserId::random(), email: email.clone(), tier: Tier::Free, created_at: now };
            let user = match out.store.create_user(&user).await {
                Ok(user) => user,
                // Signed up twice at once: the second is the "already registered" case.
                Err(e) if e.is_conflict_on("users_email_key") => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            out.store.set_password_hash(user.id, &hash, now).await?;
            out.audit
                .from_client(
                    Some(user.id),
                    "account_created",
                    json!({}),
                    Severity::Info,
                    client.ip,
                    client.user_agent.as_deref(),
                )
                .await;
            out.confirmation(user.id, &email).await
        });
        Ok(())
    }

    /// Whether another message may go to `email` now: a few per address (and client address)
    /// and window, so no page mail-bombs an inbox or fills the queue; past them, nothing is sent
    /// and the answer stays the same.
    fn may_mail(&self, email: &str, client: &Client) -> bool {
        self.throttle.begin(&format!("mail:{email}"), client.ip).is_ok()
    }

    /// Sends the confirmation link again, if the address has an unconfirmed account (after the
    /// answer, and a few times per window at most).
    pub async fn resend_confirmation(&self, email: &str, client: &Client) -> IdentityResult<()> {
        let Ok(email) = normalize_email(email) else { return Ok(()) };
        if !self.may_mail(&email, client) {
            return Ok(());
        }
        let out = self.outgoing.clone();
        self.outgoing.later("confirmation-again", async move {
            match out.store.credentials_by_email(&email).await? {
                Some(c) if c.email_verified_at.is_none() => out.confirmation(c.user_id, &email).await,
                _ => Ok(()),
            }
        });
        Ok(())
    }

    /// Uses a confirmation link.
    pub async fn confirm(&self, token: &str, client: &Client) -> IdentityResult<UserId> {
        let t = self.use_link(token, EmailPurpose::Confirm).await?;
        self.store.mark_email_verified(t.user_id, self.now()).await?;
        self.audit(Some(t.user_id), "email_confirmed", Severity::Info, client).await;
        Ok(t.user_id)
    }

    async fn use_link(&self, token: &str, purpose: EmailPurpose) -> IdentityResult<EmailToken> {
        if !tokens::well_formed(token) {
            return Err(IdentityError::InvalidLink);
        }
        self.store.use_email_token(&tokens::digest(token), purpose, self.now()).await?.ok_or(IdentityError::InvalidLink)
    }

    // === login and sessions ===

    /// Checks the password and opens a session.
    pub async fn log_in(&self, email: &str, password: &SecretString, client: &Client) -> IdentityResult<LoginOutcome> {
        let email = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        if let Err(throttled) = self.throttle.begin(&email, client.ip) {
            self.audit(None, "login_throttled", Severity::Warning, client).await;
            return Err(IdentityError::Throttled(throttled));
        }
        let credentials = self.store.credentials_by_email(&email).await?;
        let hash = credentials.as_ref().and_then(|c| c.password_hash.as_deref());
        let matched = self.passwords.verify(password, hash).await?;
        let known = credentials.as_ref().map(|c| c.user_id);
        let Some(c) = credentials.filter(|_| matched) else {
            self.audit(known, "login_failed", Severity::Warning, client).await;
            return Err(IdentityError::BadCredentials);
        };
        if c.status == UserStatus::Suspended {
            self.audit(Some(c.user_id), "login_refused_suspended", Severity::Warning, client).await;
            return Err(IdentityError::Suspended);
        }
        if c.email_verified_at.is_none() {
            return Err(IdentityError::Unconfirmed);
        }
        self.throttle.succeeded(&email, client.ip);
        self.login_of(c.user_id, client, "password").await
    }

    async fn open_session(&self, user: UserId, client: &Client) -> IdentityResult<NewSession> {
        let token = tokens::fresh()?;
        let now = self.now();
        let id = Uuid::new_v4();
        self.store
            .create_session(&Session {
                id,
                user_id: user,
                token_hash: tokens::digest(&token),
                created_at: now,
                authenticated_at: now,
                last_seen_at: now,
                expires_at: self.settings.sessions.expires_at(now),
                revoked_at: None,
                ip_address: client.ip,
                user_agent: client.user_agent.as_ref().map(|ua| ua.chars().take(256).collect()),
            })
            .await?;
        Ok(NewSession { token: SecretString::from(token), user_id: user, session_id: id })
    }

    /// The person behind a session cookie, if the session is alive.
    pub async fn session(&self, token: &str) -> IdentityResult<Option<SessionUser>> {
        if !tokens::well_formed(token) {
            return Ok(None);
        }
        let Some(s) = self.store.session_by_token_hash(&tokens::digest(token)).await? else { return Ok(None) };
        let times = SessionTimes {
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            authenticated_at: s.authenticated_at,
            revoked_at: s.revoked_at,
        };
        let now = self.now();
        if self.settings.sessions.state(&times, now) != SessionState::Live {
            return Ok(None);
        }
        let Some(user) = self.store.user(s.user_id).await? else { return Ok(None) };
        if user.status == UserStatus::Suspended {
            return Ok(None);
        }
        if now - s.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(s.user_id, s.id, now).await?;
        }
        Ok(Some(SessionUser { user_id: s.user_id, session_id: s.id, email: user.email, tier: user.tier, times }))
    }

    /// Whether a sensitive action must ask for the password again.
    pub fn needs_reauth(&self, s: &SessionUser) -> bool {
        self.settings.sessions.needs_reauth(&s.times, self.now())
    }

    pub async fn log_out(&self, s: &SessionUser, client: &Client) -> IdentityResult<()> {
        self.store.revoke_session(s.user_id, s.session_id, self.now()).await?;
        self.audit(Some(s.user_id), "logout", Severity::Info, client).await;
        Ok(())
    }

    /// Ends every session of the account, this one included.
    pub async fn log_out_everywhere(&self, s: &SessionUser, client: &Client) -> IdentityResult<u64> {
        let ended = self.store.revoke_all_sessions(s.user_id, self.now()).await?;
        self.store.revoke_email_tokens(s.user_id, self.now()).await?;
        self.audit(Some(s.user_id), "sessions_revoked", Severity::Info, client).await;
        Ok(ended)
    }

    /// The account's live sessions, most recently used first.
    pub async fn sessions(&self, user: UserId) -> IdentityResult<Vec<SessionInfo>> {
        let now = self.now();
        let policy = self.settings.sessions;
        Ok(self
            .store
            .sessions_of_user(user)
            .await?
            .into_iter()
            .filter(|s| {
                let t = SessionTimes {
                    created_at: s.created_at,
                    last_seen_at: s.last_seen_at,
                    authenticated_at: s.authenticated_at,
                    revoked_at: s.revoked_at,
                };
                policy.state(&t, now) == SessionState::Live
            })
            .map(|s| SessionInfo {
                id: s.id,
                ip: s.ip_address,
                user_agent: s.user_agent,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
            })
            .collect())
    }

    /// The account's recent audit events (the "security activity" of the settings page).
    pub async fn activity(&self, user: UserId, limit: u32) -> IdentityResult<Vec<Activity>> {
        Ok(self
            .store
            .audit_events(user, limit)
            .await?
            .into_iter()
            .map(|e| Activity { kind: e.event_type, ip: e.ip_address, user_agent: e.user_agent, at: e.created_at })
            .collect())
    }

    /// Ends one of the account's sessions.
    pub async fn revoke_session(&self, s: &SessionUser, id: Uuid, client: &Client) -> IdentityResult<()> {
        self.store.revoke_session(s.user_id, id, self.now()).await?;
        self.audit(Some(s.user_id), "session_revoked", Severity::Info, client).await;
        Ok(())
    }

    // === passwords ===

    /// Mails a reset link if the address has an account; the answer and its time are the same
    /// either way (the lookup runs after the answer), and a few per address and window at most.
    pub async fn forgot_password(&self, email: &str, client: &Client) -> IdentityResult<()> {
        let Ok(email) = normalize_email(email) else { return Ok(()) };
        if !self.may_mail(&email, client) {
            return Ok(());
        }
        let (out, client) = (self.outgoing.clone(), client.clone());
        self.outgoing.later("password-reset", async move {
            let Some(c) = out.store.credentials_by_email(&email).await? else { return Ok(()) };
            let token = out.token(c.user_id, EmailPurpose::Reset, None, out.reset_ttl).await?;
            let minutes = out.reset_ttl.as_secs() / 60;
            out.mailer.send(letters::reset(&email, &out.link("/reset-password", &token), minutes));
            out.audit
                .from_client(
                    Some(c.user_id),
                    "password_reset_requested",
                    json!({}),
                    Severity::Info,
                    client.ip,
                    client.user_agent.as_deref(),
                )
                .await;
            Ok(())
        });
        Ok(())
    }

    /// Sets a new password from a reset link, and ends every session. The link also confirms
    /// the address (it was read in that inbox).
    pub async fn reset_password(&self, token: &str, password: &SecretString, client: &Client) -> IdentityResult<()> {
        password::check(secrecy::ExposeSecret::expose_secret(password)).map_err(IdentityError::WeakPassword)?;
        let hash = self.passwords.hash(password).await?;
        let t = self.use_link(token, EmailPurpose::Reset).await?;
        let now = self.now();
        self.store.set_password_hash(t.user_id, &hash, now).await?;
        self.store.mark_email_verified(t.user_id, now).await?;
        self.store.revoke_all_sessions(t.user_id, now).await?;
        self.store.revoke_email_tokens(t.user_id, now).await?;
        self.audit(Some(t.user_id), "password_reset", Severity::Warning, client).await;
        Ok(())
    }

    /// Checks the password of the signed-in person (for sensitive actions).
    ///
    /// Every check counts against the account's throttle (a stolen session cookie is no
    /// unlimited password guesser), and a failed one is audited. An account without a
    /// password (Google sign-in only) confirms with a recent login instead.
    pub async fn check_password(
        &self,
        s: &SessionUser,
        password: &SecretString,
        client: &Client,
    ) -> IdentityResult<()> {
        let key = format!("password-check:{}", s.user_id);
        self.throttle.begin(&key, client.ip).map_err(IdentityError::Throttled)?;
        let credentials = self.store.credentials(s.user_id).await?;
        let hash = credentials.as_ref().and_then(|c| c.password_hash.as_deref()).filter(|h| *h != passwords::UNUSABLE);
        if hash.is_none() {
            return match self.needs_reauth(s) {
                true => Err(IdentityError::ReauthRequired),
                false => Ok(()),
            };
        }
        if self.passwords.verify(password, hash).await? {
            return Ok(());
        }
        self.audit(Some(s.user_id), "password_check_failed", Severity::Warning, client).await;
        Err(IdentityError::WrongPassword)
    }

    /// Changes the password: every session ends, and this browser gets a fresh one.
    pub async fn change_password(
        &self,
        s: &SessionUser,
        current: &SecretString,
        new: &SecretString,
        client: &Client,
    ) -> IdentityResult<NewSession> {
        self.check_password(s, current, client).await?;
        password::check(secrecy::ExposeSecret::expose_secret(new)).map_err(IdentityError::WeakPassword)?;
        let hash = self.passwords.hash(new).await?;
        let now = self.now();
        self.store.set_password_hash(s.user_id, &hash, now).await?;
        self.store.revoke_all_sessions(s.user_id, now).await?;
        self.store.revoke_email_tokens(s.user_id, now).await?;
        let session = self.open_session(s.user_id, client).await?;
        self.mailer.send(letters::password_changed(&s.email));
        self.audit(Some(s.user_id), "password_changed", Severity::Warning, client).await;
        Ok(session)
    }

    // === CSRF ===

    /// The CSRF token of forms shown to `binding` (a session id, or the pre-session cookie).
    pub fn csrf_token(&self, binding: &str) -> String {
        self.tag("csrf/", binding.as_bytes()).map(|t| URL_SAFE_NO_PAD.encode(t)).unwrap_or_default()
    }

    /// Whether `token` is the CSRF token of `binding` (compared in constant time).
    pub fn csrf_valid(&self, binding: &str, token: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else { return false };
        !binding.is_empty() && self.tag_matches("csrf/", binding.as_bytes(), &raw)
    }

    /// The server's signature of `body` for `purpose` (CSRF tokens, two-factor tickets, the
    /// flow of a Google sign-in): one key, a distinct prefix per purpose.
    fn signer(&self, purpose: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = self.csrf.clone()?;
        mac.update(purpose.as_bytes());
        mac.update(body);
        Some(mac)
    }

    fn tag(&self, purpose: &str, body: &[u8]) -> Option<Vec<u8>> {
        self.signer(purpose, body).map(|m| m.finalize().into_bytes().to_vec())
    }

    /// Whether `tag` is the signature of `body` for `purpose` (compared in constant time).
    fn tag_matches(&self, purpose: &str, body: &[u8], tag: &[u8]) -> bool {
        self.signer(purpose, body).is_some_and(|m| m.verify_slice(tag).is_ok())
    }
}

#[cfg(test)]
mod tests;
