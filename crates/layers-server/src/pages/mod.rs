//! The pages people use (SPEC §6): server-rendered HTML with plain forms, which work with
//! JavaScript turned off. Invariants: every page answers with `Cache-Control: no-store` and a
//! strict CSP (no inline script or style; forms post only here; no framing); every form that
//! changes state carries a CSRF token bound to the session (or, before login, to the visitor
//! cookie) and a cross-site submission is refused; a 5xx is logged once, with its cause, by the
//! request middleware.

mod assets;
mod auth;
mod billing;
mod chart;
mod data;
mod format;
mod keys;
mod layout;
mod oidc;
mod overview;
mod recovery;
mod security;
pub mod session;
mod settings;
mod two_factor;
mod usage;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use layers_core::identity::IdentityError;
use maud::html;

use crate::error::InternalDetail;
use crate::state::AppState;

/// Largest form body a page accepts.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The content security policy of every page: nothing inline, nothing from elsewhere. Forms
/// post here only; the forms that continue elsewhere ("Continue with Google", buying through
/// Stripe Checkout, the billing portal) are answered by a redirect there, whose origin
/// `form-action` must name (browsers apply it to the redirects of a form's submission too).
pub fn content_security_policy(continue_to: &[&str]) -> HeaderValue {
    let mut origins = String::new();
    for o in continue_to.iter().filter_map(|u| origin_of(u)) {
        if !origins.contains(&format!(" {o}")) {
            origins.push(' ');
            origins.push_str(&o);
        }
    }
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'{origins}; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!("{scheme}://{host}"))
}

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/two-factor", post(two_factor::complete_login))
        .route("/logout", post(auth::logout))
        .route("/auth/confirm", get(auth::confirm_page).post(auth::confirm))
        .route("/auth/resend", post(auth::resend))
        .route("/auth/change-email", get(auth::change_email_page).post(auth::change_email))
        .route("/auth/google", post(oidc::start))
        .route("/auth/callback", get(oidc::callback))
        .route("/forgot-password", get(recovery::forgot_page).post(recovery::forgot))
        .route("/reset-password", get(recovery::reset_page).post(recovery::reset))
        .route("/dashboard", get(overview::show))
        .route("/dashboard/keys", get(keys::show).post(keys::create))
        .route("/dashboard/keys/alerts", post(keys::save_alerts))
        .route("/dashboard/keys/{id}", get(keys::detail))
        .route("/dashboard/keys/{id}/limits", post(keys::set_limits))
        .route("/dashboard/keys/{id}/rotate", post(keys::rotate))
        .route("/dashboard/keys/{id}/retire-old-secret", post(keys::retire_old_secret))
        .route("/dashboard/keys/{id}/state", post(keys::set_state))
        .route("/dashboard/usage", get(usage::show))
        .route("/dashboard/usage.csv", get(usage::csv))
        .route("/dashboard/usage/{id}", get(usage::detail))
        .route("/dashboard/billing", get(billing::show))
        .route("/dashboard/billing/buy", post(billing::buy))
        .route("/dashboard/billing/plan", post(billing::plan))
        .route("/dashboard/billing/portal", post(billing::portal))
        .route("/dashboard/billing/auto-topup", post(billing::auto_topup))
        .route("/dashboard/billing/checkout/success", get(billing::success))
        .route("/dashboard/billing/checkout/cancelled", get(billing::cancelled))
        .route("/dashboard/security", get(security::show))
        .route("/dashboard/security/lock-down", post(security::lock_down))
        .route("/dashboard/settings", get(settings::show))
        .route("/dashboard/settings/password", post(settings::change_password))
        .route("/dashboard/settings/sessions/revoke", post(settings::revoke_session))
        .route("/dashboard/settings/sessions/everywhere", post(settings::log_out_everywhere))
        .route("/dashboard/settings/email", post(settings::change_email))
        .route("/dashboard/settings/export", post(data::export))
        .route("/dashboard/settings/delete", post(data::delete))
        .route("/dashboard/settings/two-factor", get(two_factor::show_setup))
        .route("/dashboard/settings/two-factor/setup", post(two_factor::begin))
        .route("/dashboard/settings/two-factor/enable", post(two_factor::enable))
        .route("/dashboard/settings/two-factor/disable", post(two_factor::disable))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(from_fn_with_state(state, page_headers))
        .route(assets::CSS_PATH, get(assets::css))
        .route(assets::JS_PATH, get(assets::js))
}

/// `/`: the dashboard for a signed-in browser, else the login page.
async fn home(visitor: session::Visitor) -> Redirect {
    match visitor.session_token {
        Some(_) => Redirect::to("/dashboard"),
        None => Redirect::to("/login"),
    }
}

async fn page_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A state-changing form posted from another site is refused before any handler runs (the
    // CSRF token would refuse it too; this also covers a form of ours framed or replayed).
    let cross_site = req.headers().get("sec-fetch-site").is_some_and(|v| v == "cross-site");
    let mut resp = if req.method() == http::Method::POST && cross_site {
        PageError::Csrf.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, state.csp.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    if state.cookies.secure {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    }
    resp
}

/// What a page could not do, as an HTML answer.
#[derive(Debug)]
pub enum PageError {
    /// The CSRF token is missing, from another session, or the form came from another site.
    Csrf,
    /// The form could not be read.
    BadForm,
    /// No such page, or not this account's: 404 (the same answer either way).
    NotFound,
    /// The request asks for something the page cannot do: 400 with what to change.
    Invalid(&'static str),
    /// This node is busy with this kind of work: 503, try again.
    Busy(&'static str),
    /// Something of ours failed: 500, the cause logged once.
    Internal(String),
}

impl PageError {
    /// A service's failure as a page's answer.
    pub fn service(err: layers_core::ServiceError) -> PageError {
        match err {
            layers_core::ServiceError::NotFound(_) => PageError::NotFound,
            layers_core::ServiceError::Invalid(text) => PageError::Invalid(text),
            layers_core::ServiceError::Busy(text) => PageError::Busy(text),
            other => PageError::Internal(layers_core::error::chain(&other)),
        }
    }
}

impl From<IdentityError> for PageError {
    fn from(err: IdentityError) -> Self {
        PageError::Internal(layers_core::error::chain(&err))
    }
}

/// A form of a page: like axum's `Form`, but a body that cannot be read is a page's 400.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for PageForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        match axum::extract::Form::<T>::from_request(req, state).await {
            Ok(axum::extract::Form(form)) => Ok(PageForm(form)),
            Err(_) => Err(PageError::BadForm),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "For your safety the form was not sent. Go back, reload the page and try again.",
            ),
            PageError::BadForm => {
                (StatusCode::BAD_REQUEST, "This form could not be read", "Go back, reload the page and try again.")
            }
            PageError::NotFound => {
                (StatusCode::NOT_FOUND, "Nothing here", "This page does not exist, or it is not part of your account.")
            }
            PageError::Invalid(text) => (StatusCode::BAD_REQUEST, "That cannot be done", *text),
            PageError::Busy(text) => (StatusCode::SERVICE_UNAVAILABLE, "Busy right now", *text),
            PageError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side",
                "Nothing was changed. Try again in a moment.",
            ),
        };
        let card = html! {
            h1 { (title) }
            p class="lead" { (text) }
            a class="btn secondary" href="/dashboard" { "Back to Layers" }
        };
        let mut resp = (status, Html(layout::public(title, card, None).into_string())).into_response();
        if let PageError::Internal(detail) = self {
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp
    }
}

/// Percent-encodes a value for a query string.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An HTML page with a status.
pub(crate) fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_identity_provider_for_form_action_and_nothing_else() {
        let plain = content_security_policy(&[]);
        assert_eq!(
            plain.to_str().unwrap(),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        let google = content_security_policy(&["https://accounts.google.com"]);
        assert!(google.to_str().unwrap().contains("form-action 'self' https://accounts.google.com;"));
        let local = content_security_policy(&["http://127.0.0.1:4000/realm?x=1"]);
        assert!(local.to_str().unwrap().contains("form-action 'self' http://127.0.0.1:4000;"));
        let odd = content_security_policy(&["https://evil.example; script-src *"]);
        assert!(!odd.to_str().unwrap().contains("script-src *"), "an issuer cannot inject a directive");
        let stripe = content_security_policy(&[
            "https://accounts.google.com",
            "https://checkout.stripe.com",
            "https://billing.stripe.com",
            "https://checkout.stripe.com",
        ]);
        assert!(stripe.to_str().unwrap().contains(
            "form-action 'self' https://accounts.google.com https://checkout.stripe.com https://billing.stripe.com;"
        ));
    }
}
