//! "Continue with Google": OpenID Connect's authorization-code flow with PKCE (S256), `state`
//! and `nonce` (OpenID Connect Core §3.1), against any issuer (Google by default; a local one
//! in tests). The browser carries the flow in a cookie signed by the server; the callback checks
//! `state`, trades the code (with the PKCE verifier and the client's credentials) for an ID
//! token, and verifies it ([`jwt`]). Identities are keyed on issuer + subject; one is linked to
//! an existing account only through an e-mail the issuer says it verified.
//! Invariants: every endpoint comes from the issuer's discovery document, whose `issuer` must be
//! the configured one; the issuer's HTTP client follows no redirect; nothing of an unverified
//! token is used.

pub mod jwt;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use layers_domain::{Tier, UserId};
use layers_store::{NewUser, Severity, UserStatus};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{tokens, Client, IdentityError, IdentityResult, IdentityService, LoginOutcome};
use crate::accounts::normalize_email;
use crate::error::ServiceError;

/// The identity provider of a deployment.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// `https://accounts.google.com` by default.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// How long a browser may take at the provider.
const FLOW_TTL_MS: u64 = 10 * 60 * 1000;
/// How long discovery and keys are kept before being fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// What the browser carries to the provider and back (signed, HttpOnly).
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    redirect_to: String,
    expires_ms: u64,
}

/// The client of one issuer, with its discovery document and keys cached.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    jwks: Mutex<Option<(jwt::Jwks, Instant)>>,
}

/// Why the provider's answer was refused (logged; the person sees one message).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Provider(String),
    #[error("the login's state does not match this browser's")]
    State,
    #[error("the ID token was refused: {0}")]
    Token(#[from] jwt::JwtError),
    #[error("the identity provider did not verify this e-mail address")]
    UnverifiedEmail,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Oidc, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Oidc { settings, http, discovery: Mutex::new(None), jwks: Mutex::new(None) })
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, OidcError> {
        let resp = self.http.get(url).send().await.map_err(|e| OidcError::Provider(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(OidcError::Provider(format!("{url} answered {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| OidcError::Provider(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|_| OidcError::Provider(format!("{url} did not answer JSON")))
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some((d, at)) = self.discovery.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok(d.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer != self.settings.issuer {
            return Err(OidcError::Provider("the discovery document names another issuer".into()));
        }
        *self.discovery.lock().unwrap_or_else(|e| e.into_inner()) = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    async fn jwks(&self, d: &Discovery, fresh: bool) -> Result<jwt::Jwks, OidcError> {
        if !fresh {
            if let Some((k, at)) = self.jwks.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                if at.elapsed() < CACHE_TTL {
                    return Ok(k.clone());
                }
            }
        }
        let keys: jwt::Jwks = self.get_json(&d.jwks_uri).await?;
        *self.jwks.lock().unwrap_or_else(|e| e.into_inner()) = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// Trades the code for an ID token and verifies it.
    async fn redeem(
        &self,
        code: &str,
        flow: &Flow,
        redirect_uri: &str,
        now_secs: i64,
    ) -> Result<jwt::IdClaims, OidcError> {
        let d = self.discovery().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &flow.verifier),
            ("client_id", &self.settings.client_id),
        ];
        let secret = self.settings.client_secret.expose_secret();
        let basic = d.token_endpoint_auth_methods_supported.is_empty()
            || d.token_endpoint_auth_methods_supported.iter().any(|m| m == "client_secret_basic");
        let rb = self.http.post(&d.token_endpoint);
        let rb = if basic {
            rb.basic_auth(&self.settings.client_id, Some(secret)).form(&form)
        } else {
            let mut with_secret = form.to_vec();
            with_secret.push(("client_secret", secret));
            rb.form(&with_secret)
        };
        let resp = rb.send().await.map_err(|e| OidcError::Provider(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(OidcError::Provider(format!("the token endpoint answered {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| OidcError::Provider(e.to_string()))?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|_| OidcError::Provider("no id_token in the answer".into()))?;
        let expect = jwt::Expect {
            issuer: &self.settings.issuer,
            client_id: &self.settings.client_id,
            nonce: &flow.nonce,
            now_secs,
        };
        let keys = self.jwks(&d, false).await?;
        match jwt::verify(&answer.id_token, &keys, &expect) {
            // Keys rotate: one fresh fetch before giving up.
            Err(jwt::JwtError::UnknownKey) => Ok(jwt::verify(&answer.id_token, &self.jwks(&d, true).await?, &expect)?),
            other => Ok(other?),
        }
    }
}

impl IdentityService {
    fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.settings.public_url)
    }

    pub fn oidc_enabled(&self) -> bool {
        self.oidc.is_some()
    }

    /// Starts a login at the provider: where to send the browser, and the flow cookie's value.
    pub async fn oidc_begin(&self, redirect_to: &str) -> IdentityResult<(String, String)> {
        let oidc = self.oidc.as_ref().ok_or(IdentityError::OidcUnavailable)?;
        let d = oidc.discovery().await.map_err(|e| self.oidc_failed(&e))?;
        let flow = Flow {
            state: tokens::fresh()?,
            nonce: tokens::fresh()?,
            verifier: tokens::fresh()?,
            redirect_to: redirect_to.to_owned(),
            expires_ms: self.clock.unix_ms() + FLOW_TTL_MS,
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&d.authorization_endpoint)
            .map_err(|_| self.oidc_failed(&OidcError::Provider("a bad authorization endpoint".into())))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &oidc.settings.client_id)
            .append_pair("redirect_uri", &self.callback_url())
            .append_pair("scope", "openid email profile")
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&flow).map_err(|_| ServiceError::Entropy)?);
        let tag = self.tag("oidc-flow/", body.as_bytes()).ok_or(ServiceError::Entropy)?;
        let cookie = format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag));
        Ok((url.to_string(), cookie))
    }

    fn open_flow(&self, cookie: &str) -> Option<Flow> {
        let (body, tag) = cookie.split_once('.')?;
        if !self.tag_matches("oidc-flow/", body.as_bytes(), &URL_SAFE_NO_PAD.decode(tag).ok()?) {
            return None;
        }
        let flow: Flow = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (self.clock.unix_ms() <= flow.expires_ms).then_some(flow)
    }

    fn oidc_failed(&self, err: &OidcError) -> IdentityError {
        tracing::warn!(error = %err, "an OpenID Connect login was refused");
        IdentityError::OidcRefused
    }

    /// The provider sent the browser back: checks it all, then logs the person in (creating or
    /// linking the account). Returns where to go next.
    pub async fn oidc_finish(
        &self,
        cookie: Option<&str>,
        code: &str,
        state: &str,
        client: &Client,
    ) -> IdentityResult<(LoginOutcome, String)> {
        let oidc = self.oidc.as_ref().ok_or(IdentityError::OidcUnavailable)?;
        let flow = cookie.and_then(|c| self.open_flow(c)).ok_or_else(|| self.oidc_failed(&OidcError::State))?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(state.as_bytes(), flow.state.as_bytes())) {
            return Err(self.oidc_failed(&OidcError::State));
        }
        let now_secs = i64::try_from(self.clock.unix_ms() / 1000).unwrap_or(i64::MAX);
        let claims =
            oidc.redeem(code, &flow, &self.callback_url(), now_secs).await.map_err(|e| self.oidc_failed(&e))?;
        let user = self.oidc_account(&claims, client).await?;
        let outcome = self.login_of(user, client, "oidc").await?;
        Ok((outcome, flow.redirect_to))
    }

    /// The account of an identity: already linked, linked now through a verified e-mail, or new.
    async fn oidc_account(&self, claims: &jwt::IdClaims, client: &Client) -> IdentityResult<UserId> {
        if let Some(user) = self.store.user_by_identity(&claims.issuer, &claims.subject).await? {
            return Ok(user);
        }
        let email = claims
            .email
            .as_deref()
            .filter(|_| claims.email_verified)
            .and_then(|e| normalize_email(e).ok())
            .ok_or_else(|| self.oidc_failed(&OidcError::UnverifiedEmail))?;
        let now = self.now();
        let existing = self.store.credentials_by_email(&email).await?;
        let linked_existing = existing.is_some();
        let user = match existing {
            // Someone signed up with this address and never confirmed it: whoever did cannot
            // be the owner the issuer just vouched for, so their password and sessions go
            // (a pre-registered account is not a way into the real owner's).
            Some(existing) if existing.email_verified_at.is_none() => {
                self.store.set_password_hash(existing.user_id, super::passwords::UNUSABLE, now).await?;
                self.store.revoke_all_sessions(existing.user_id, now).await?;
                existing.user_id
            }
            Some(existing) => existing.user_id,
            None => {
                let user = NewUser { id: UserId::random(), email: email.clone(), tier: Tier::Free, created_at: now };
                let user = self.store.create_user(&user).await?.id;
                self.audit(Some(user), "account_created", Severity::Info, client).await;
                user
            }
        };
        // The issuer verified the address: it is confirmed here too.
        self.store.mark_email_verified(user, now).await?;
        self.store.link_identity(user, &claims.issuer, &claims.subject, now).await?;
        if linked_existing {
            self.mailer.send(super::letters::identity_linked(&email));
        }
        self.audit(Some(user), "identity_linked", Severity::Info, client).await;
        Ok(user)
    }

    /// A login of `user` whose first factor passed (`method` for the audit trail).
    pub(super) async fn login_of(&self, user: UserId, client: &Client, method: &str) -> IdentityResult<LoginOutcome> {
        let status = self.store.credentials(user).await?.map(|c| c.status);
        if status == Some(UserStatus::Suspended) {
            return Err(IdentityError::Suspended);
        }
        if self.store.two_factor(user).await?.is_some_and(|f| f.enabled_at.is_some()) {
            return Ok(LoginOutcome::SecondFactor(self.ticket_for(user)));
        }
        let session = self.open_session(user, client).await?;
        self.audit
            .from_client(
                Some(user),
                "login_succeeded",
                serde_json::json!({ "method": method }),
                Severity::Info,
                client.ip,
                client.user_agent.as_deref(),
            )
            .await;
        Ok(LoginOutcome::Session(session))
    }
}
