//! Sign-up, confirmation, login and logout. Invariant: the answers to sign-up, "send the link
//! again" and a failed login are the same whether the e-mail is registered or not.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::StatusCode;
use layers_core::identity::{IdentityError, LoginOutcome};
use layers_domain::identity::redirect::same_site_path;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

use super::layout::{self, notice, Tone};
use super::session::{SignedIn, Visitor};
use super::{page, PageError, PageForm};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "redirectTo")]
    redirect_to: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default, rename = "redirectTo")]
    redirect_to: String,
    #[serde(default)]
    notice: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

impl EmailForm {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn email(&self) -> &str {
        &self.email
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

// === sign-up ===

fn signup_card(google: Markup, csrf: &str, email: &str, problem: Option<&str>) -> Markup {
    html! {
        h1 { "Create your account" }
        p class="lead" { "One API key for every model. Pay as you go from prepaid credits." }
        @if let Some(p) = problem { (notice(Tone::Bad, p)) }
        (google)
        form method="post" action="/signup" {
            (layout::csrf_field(csrf))
            (layout::email_field(email, true))
            (layout::password_field("password", "Password", "new-password",
                Some("At least 12 characters. A few unrelated words make a strong one.")))
            button class="btn block" type="submit" { "Create account" }
        }
    }
}

fn signup_foot() -> Markup {
    html! { "Already have an account? " a href="/login" { "Log in" } }
}

pub async fn signup_page(State(state): State<AppState>, visitor: Visitor) -> Response {
    let csrf = visitor.csrf(&state);
    let card = signup_card(super::oidc::button(&state, &csrf, ""), &csrf, "", None);
    let markup = layout::public("Create your account", card, Some(signup_foot()));
    visitor.with_cookie(page(StatusCode::OK, markup))
}

pub async fn signup(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<Credentials>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    let problem = match state.core.identity.sign_up(&form.email, &password, &visitor.client).await {
        Ok(()) => return Ok(check_email(&form.email)),
        Err(IdentityError::InvalidEmail) => "Enter a valid e-mail address.".to_owned(),
        Err(IdentityError::WeakPassword(weak)) => weak.message().to_owned(),
        Err(other) => return Err(other.into()),
    };
    let csrf = visitor.csrf(&state);
    let card = signup_card(super::oidc::button(&state, &csrf, ""), &csrf, &form.email, Some(&problem));
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, layout::public("Create your account", card, Some(signup_foot()))))
}

/// After sign-up: the same words whether or not the address already had an account.
fn check_email(email: &str) -> Response {
    let card = html! {
        h1 { "Check your inbox" }
        p class="lead" { "We sent a message to " strong { (email) } " with a link to confirm your address. The link works once, for 24 hours." }
        p class="muted small" { "Nothing there after a few minutes? Look in your spam folder, or log in to have the link sent again." }
        a class="btn secondary block" href="/login" { "Go to login" }
    };
    page(StatusCode::OK, layout::public("Check your inbox", card, None))
}

// === login ===

struct LoginView<'a> {
    google: Markup,
    csrf: &'a str,
    email: &'a str,
    redirect_to: &'a str,
    notice: Option<Markup>,
    /// Offer to send the confirmation link again (the password was right, the address is not confirmed).
    resend: bool,
}

fn login_card(v: &LoginView<'_>) -> Markup {
    html! {
        h1 { "Log in" }
        p class="lead" { "Welcome back." }
        @if let Some(n) = &v.notice { (n) }
        @if v.resend {
            form method="post" action="/auth/resend" class="stack" {
                (layout::csrf_field(v.csrf))
                input type="hidden" name="email" value=(v.email);
                button class="btn secondary block" type="submit" { "Send the link again" }
            }
            div class="or" { "or" }
        }
        (v.google)
        form method="post" action="/login" {
            (layout::csrf_field(v.csrf))
            input type="hidden" name="redirectTo" value=(v.redirect_to);
            (layout::email_field(v.email, v.email.is_empty()))
            div class="field" {
                div class="row" {
                    label for="password" { "Password" }
                    a class="small" href="/forgot-password" { "Forgot your password?" }
                }
                input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256";
            }
            button class="btn block" type="submit" { "Log in" }
        }
    }
}

fn login_foot() -> Markup {
    html! { "New to Layers? " a href="/signup" { "Create an account" } }
}

fn login_notice(code: &str) -> Option<Markup> {
    let (tone, text) = match code {
        "confirmed" => (Tone::Ok, "Your address is confirmed. Log in to continue."),
        "reset" => (Tone::Ok, "Your password was changed and every session was logged out. Log in with the new one."),
        "logged_out" => (Tone::Ok, "You are logged out."),
        "everywhere" => (Tone::Ok, "Every session of your account was logged out."),
        "expired" => (Tone::Bad, "That login took too long. Enter your password again."),
        "deleted" => (Tone::Ok, "Your account was deleted and its keys no longer work. Thank you for using Layers."),
        _ => return None,
    };
    Some(notice(tone, text))
}

fn login_page_with(visitor: &Visitor, status: StatusCode, view: LoginView<'_>) -> Response {
    visitor.with_cookie(page(status, layout::public("Log in", login_card(&view), Some(login_foot()))))
}

pub async fn login_page(State(state): State<AppState>, visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    let csrf = visitor.csrf(&state);
    let redirect_to = same_site_path(&q.redirect_to).unwrap_or("");
    let google = super::oidc::button(&state, &csrf, redirect_to);
    let view =
        LoginView { google, csrf: &csrf, email: "", redirect_to, notice: login_notice(&q.notice), resend: false };
    login_page_with(&visitor, StatusCode::OK, view)
}

pub async fn login(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<Credentials>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    let redirect_to = same_site_path(&form.redirect_to).unwrap_or("");
    let (status, text, resend) = match state.core.identity.log_in(&form.email, &password, &visitor.client).await {
        Ok(LoginOutcome::Session(session)) => {
            let target = if redirect_to.is_empty() { "/dashboard" } else { redirect_to };
            let mut resp = Redirect::to(target).into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.set_session(&session.token));
            return Ok(resp);
        }
        Ok(LoginOutcome::SecondFactor(ticket)) => {
            let markup = super::two_factor::second_step(&visitor.csrf(&state), &ticket.0, redirect_to, None);
            return Ok(page(StatusCode::OK, markup));
        }
        Err(IdentityError::BadCredentials) => {
            (StatusCode::UNAUTHORIZED, "Incorrect e-mail or password.".to_owned(), false)
        }
        Err(IdentityError::Unconfirmed) => (
            StatusCode::FORBIDDEN,
            "Confirm your e-mail address first: open the link we sent you, or have it sent again.".to_owned(),
            true,
        ),
        Err(IdentityError::Throttled(t)) => {
            let minutes = t.retry_after.as_secs().div_ceil(60).max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many attempts. Try again in {minutes} minutes, or reset your password."),
                false,
            )
        }
        Err(IdentityError::Suspended) => {
            (StatusCode::FORBIDDEN, "This account is suspended. Write to support to restore it.".to_owned(), false)
        }
        Err(other) => return Err(other.into()),
    };
    let csrf = visitor.csrf(&state);
    let google = super::oidc::button(&state, &csrf, redirect_to);
    let view = LoginView {
        google,
        csrf: &csrf,
        email: &form.email,
        redirect_to,
        notice: Some(notice(Tone::Bad, &text)),
        resend,
    };
    Ok(login_page_with(&visitor, status, view))
}

pub async fn logout(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    state.core.identity.log_out(&who.user, &who.client).await?;
    let mut resp = Redirect::to("/login?notice=logged_out").into_response();
    resp.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
    Ok(resp)
}

// === confirmation ===

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

impl TokenQuery {
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The link of the confirmation e-mail opens this page; the button confirms. (A GET never
/// uses a link: mail scanners open links before people do.)
pub async fn confirm_page(State(state): State<AppState>, visitor: Visitor, Query(q): Query<TokenQuery>) -> Response {
    let link = LinkPage {
        title: "Confirm your address",
        lead: "One click and your account is ready.",
        action: "/auth/confirm",
        button: "Confirm my address",
    };
    link.render(&state, &visitor, &q.token)
}

/// The page an e-mailed link opens: one button that uses it (a GET never uses a link: mail
/// scanners open links before people do).
struct LinkPage {
    title: &'static str,
    lead: &'static str,
    action: &'static str,
    button: &'static str,
}

impl LinkPage {
    fn render(&self, state: &AppState, visitor: &Visitor, token: &str) -> Response {
        let card = html! {
            h1 { (self.title) }
            p class="lead" { (self.lead) }
            form method="post" action=(self.action) {
                (layout::csrf_field(&visitor.csrf(state)))
                input type="hidden" name="token" value=(token);
                button class="btn block" type="submit" { (self.button) }
            }
        };
        visitor.with_cookie(page(StatusCode::OK, layout::public(self.title, card, None)))
    }
}

pub async fn confirm(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<TokenForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    match state.core.identity.confirm(&form.token, &visitor.client).await {
        Ok(_) => Ok(Redirect::to("/login?notice=confirmed").into_response()),
        Err(IdentityError::InvalidLink) => Ok(invalid_link(&state, &visitor, true)),
        Err(other) => Err(other.into()),
    }
}

/// A used, expired or unknown link, with a way to get a new one.
pub(super) fn invalid_link(state: &AppState, visitor: &Visitor, confirmation: bool) -> Response {
    let csrf = visitor.csrf(state);
    let card = html! {
        h1 { "This link has expired" }
        p class="lead" { "Links from our e-mails work once, for a limited time. Ask for a new one below." }
        @if confirmation {
            form method="post" action="/auth/resend" {
                (layout::csrf_field(&csrf))
                (layout::email_field("", true))
                button class="btn block" type="submit" { "Send the link again" }
            }
        } @else {
            a class="btn block" href="/forgot-password" { "Ask for a new link" }
        }
    };
    visitor.with_cookie(page(StatusCode::BAD_REQUEST, layout::public("Link expired", card, Some(login_foot()))))
}

pub async fn resend(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<EmailForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    state.core.identity.resend_confirmation(&form.email, &visitor.client).await?;
    let card = html! {
        h1 { "Check your inbox" }
        p class="lead" { "If " strong { (form.email) } " belongs to an account that is not confirmed yet, a new link is on its way. It works once, for 24 hours." }
        a class="btn secondary block" href="/login" { "Back to login" }
    };
    Ok(page(StatusCode::OK, layout::public("Check your inbox", card, None)))
}

/// The link sent to a new address opens this page; the button moves the account.
pub async fn change_email_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<TokenQuery>,
) -> Response {
    let link = LinkPage {
        title: "Confirm your new address",
        lead: "Your Layers account will use this address from now on.",
        action: "/auth/change-email",
        button: "Use this address",
    };
    link.render(&state, &visitor, &q.token)
}

pub async fn change_email(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<TokenForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    match state.core.identity.confirm_email_change(&form.token, &visitor.client).await {
        Ok(()) => Ok(Redirect::to("/dashboard/settings?notice=email_changed").into_response()),
        Err(IdentityError::InvalidLink) => Ok(invalid_link(&state, &visitor, false)),
        Err(other) => Err(other.into()),
    }
}
