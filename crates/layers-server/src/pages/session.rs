//! Cookies and who is at the browser: the session cookie of SPEC §6.2 (`__Host-layers_session`,
//! or `layers_session` on a plain-HTTP development URL), the pre-session cookie that binds the
//! CSRF tokens of public forms, and the extractors handlers take. Invariant: a page under
//! `/dashboard` is only ever rendered for a live session; without one the browser goes to
//! `/login?redirectTo=<this path>`.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::request::Parts;
use http::HeaderValue;
use layers_core::identity::{tokens, Client, SessionUser};
use secrecy::{ExposeSecret, SecretString};

use super::PageError;
use crate::middleware::client_ip::ClientIp;
use crate::state::AppState;

/// Cookie names and attributes of this deployment.
#[derive(Clone, Copy, Debug)]
pub struct Cookies {
    /// The public URL is https: `__Host-` names with `Secure`.
    pub secure: bool,
    /// How long the browser keeps the session cookie (the absolute lifetime).
    pub max_age_secs: u64,
}

impl Cookies {
    pub fn session_name(&self) -> &'static str {
        if self.secure {
            "__Host-layers_session"
        } else {
            "layers_session"
        }
    }

    pub fn oidc_name(&self) -> &'static str {
        if self.secure {
            "__Host-layers_oidc"
        } else {
            "layers_oidc"
        }
    }

    /// The signed flow of a login at the identity provider, for ten minutes.
    pub fn set_oidc(&self, value: &str) -> HeaderValue {
        self.header(self.oidc_name(), value, Some(600))
    }

    pub fn clear_oidc(&self) -> HeaderValue {
        self.header(self.oidc_name(), "", Some(0))
    }

    pub fn visitor_name(&self) -> &'static str {
        if self.secure {
            "__Host-layers_visitor"
        } else {
            "layers_visitor"
        }
    }

    /// `Set-Cookie` for `name`: HttpOnly, SameSite=Lax, the whole site, Secure on https; kept
    /// `max_age` seconds (0 clears it), or for the browser session when `None`.
    fn header(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let max_age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!("{name}={value}{max_age}; Path=/; HttpOnly; SameSite=Lax{secure}");
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub fn set_session(&self, token: &SecretString) -> HeaderValue {
        self.header(self.session_name(), token.expose_secret(), Some(self.max_age_secs))
    }

    pub fn clear_session(&self) -> HeaderValue {
        self.header(self.session_name(), "", Some(0))
    }

    fn set_visitor(&self, value: &str) -> HeaderValue {
        // A browser session cookie: it only binds the CSRF tokens of forms.
        self.header(self.visitor_name(), value, None)
    }
}

/// The value of cookie `name` in the request, if it is one of our tokens.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    signed_cookie(parts, name).filter(|v| tokens::well_formed(v))
}

/// The value of cookie `name`, if made of base64url and dots (a signed value of ours) and short.
fn signed_cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| v.len() <= 2048 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
}

fn client(parts: &Parts) -> Client {
    Client {
        ip: parts.extensions.get::<ClientIp>().map(|c| c.0),
        user_agent: parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// Someone at a public page: the CSRF binding of their forms (a new one is set when absent).
#[derive(Debug)]
pub struct Visitor {
    pub client: Client,
    /// The pre-session cookie's value.
    binding: String,
    /// `Set-Cookie` for a new pre-session cookie.
    set_cookie: Option<HeaderValue>,
    /// The session token, if the browser has a (possibly dead) session cookie.
    pub session_token: Option<String>,
    /// The flow of a login at the identity provider, if one is under way.
    pub oidc_flow: Option<String>,
}

impl Visitor {
    pub fn csrf(&self, state: &AppState) -> String {
        state.core.identity.csrf_token(&format!("v:{}", self.binding))
    }

    pub fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), PageError> {
        match self.set_cookie.is_none() && state.core.identity.csrf_valid(&format!("v:{}", self.binding), token) {
            true => Ok(()),
            false => Err(PageError::Csrf),
        }
    }

    /// Adds the pre-session cookie to a response, when it was new.
    pub fn with_cookie(&self, mut resp: Response) -> Response {
        if let Some(c) = &self.set_cookie {
            resp.headers_mut().append(SET_COOKIE, c.clone());
        }
        resp
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookies = state.cookies;
        let session_token = cookie(parts, cookies.session_name()).map(str::to_owned);
        let (binding, set_cookie) = match cookie(parts, cookies.visitor_name()) {
            Some(v) => (v.to_owned(), None),
            None => {
                let fresh = tokens::fresh().map_err(|_| PageError::Internal("no entropy".into()))?;
                let header = cookies.set_visitor(&fresh);
                (fresh, Some(header))
            }
        };
        let oidc_flow = signed_cookie(parts, cookies.oidc_name()).map(str::to_owned);
        Ok(Visitor { client: client(parts), binding, set_cookie, session_token, oidc_flow })
    }
}

/// A signed-in person at a `/dashboard` page.
#[derive(Debug)]
pub struct SignedIn {
    pub user: SessionUser,
    pub client: Client,
}

impl SignedIn {
    pub fn csrf(&self, state: &AppState) -> String {
        state.core.identity.csrf_token(&format!("s:{}", self.user.session_id))
    }

    pub fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), PageError> {
        match state.core.identity.csrf_valid(&format!("s:{}", self.user.session_id), token) {
            true => Ok(()),
            false => Err(PageError::Csrf),
        }
    }
}

/// No live session: to the login page, and back here after it.
#[derive(Debug)]
pub enum NotSignedIn {
    Login { back: String, clear: Option<HeaderValue> },
    Failed(PageError),
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Login { back, clear } => {
                let target = format!("/login?redirectTo={}", super::query_escape(&back));
                let mut resp = Redirect::to(&target).into_response();
                if let Some(c) = clear {
                    resp.headers_mut().append(SET_COOKIE, c);
                }
                resp
            }
            NotSignedIn::Failed(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = NotSignedIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookies = state.cookies;
        let back = parts.uri.path_and_query().map_or("/dashboard", |p| p.as_str()).to_owned();
        let back = if parts.method == http::Method::GET { back } else { parts.uri.path().to_owned() };
        let token = cookie(parts, cookies.session_name());
        let user = match token {
            Some(t) => state.core.identity.session(t).await.map_err(|e| NotSignedIn::Failed(e.into()))?,
            None => None,
        };
        match user {
            Some(user) => Ok(SignedIn { user, client: client(parts) }),
            None => Err(NotSignedIn::Login { back, clear: token.map(|_| cookies.clear_session()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_host_only_http_only_and_lax_and_secure_on_https() {
        let https = Cookies { secure: true, max_age_secs: 604_800 };
        let token = SecretString::from("t".repeat(43));
        assert_eq!(
            https.set_session(&token).to_str().unwrap(),
            format!("__Host-layers_session={}; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax; Secure", "t".repeat(43))
        );
        assert_eq!(
            https.clear_oidc().to_str().unwrap(),
            "__Host-layers_oidc=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let http = Cookies { secure: false, max_age_secs: 60 };
        assert_eq!(http.set_visitor("v").to_str().unwrap(), "layers_visitor=v; Path=/; HttpOnly; SameSite=Lax");
        assert_eq!(
            http.set_oidc("f.s").to_str().unwrap(),
            "layers_oidc=f.s; Max-Age=600; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
