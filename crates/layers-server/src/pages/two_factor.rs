//! Two-factor pages: the second step of a login, and setting it up, confirming it with a first
//! code (the recovery codes shown once), and turning it off from the settings. The QR code is
//! drawn here as inline SVG (no script, no request elsewhere), with the secret also as text.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::StatusCode;
use layers_core::identity::two_factor::Setup;
use layers_core::identity::IdentityError;
use layers_domain::identity::redirect::same_site_path;
use maud::{html, Markup, PreEscaped};
use qrcode::render::svg;
use qrcode::QrCode;
use secrecy::SecretString;
use serde::Deserialize;

use super::layout::{self, notice, Section, Tone};
use super::session::{SignedIn, Visitor};
use super::{page, PageError, PageForm};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    code: String,
    #[serde(default, rename = "redirectTo")]
    redirect_to: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SettingsCodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

fn code_field() -> Markup {
    html! {
        div class="field" {
            label for="code" { "Code" }
            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                required maxlength="32" autofocus;
            span class="hint" { "The 6-digit code from your authenticator app, or one of your recovery codes." }
        }
    }
}

/// The second step of a login.
pub(super) fn second_step(csrf: &str, ticket: &str, redirect_to: &str, problem: Option<&str>) -> Markup {
    let card = html! {
        h1 { "Two-factor login" }
        p class="lead" { "Enter the code your authenticator app shows for Layers." }
        @if let Some(p) = problem { (notice(Tone::Bad, p)) }
        form method="post" action="/login/two-factor" {
            (layout::csrf_field(csrf))
            input type="hidden" name="ticket" value=(ticket);
            input type="hidden" name="redirectTo" value=(redirect_to);
            (code_field())
            button class="btn block" type="submit" { "Log in" }
        }
    };
    layout::public("Two-factor login", card, Some(html! { "Lost your phone? Enter a recovery code above." }))
}

pub async fn complete_login(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    let redirect_to = same_site_path(&form.redirect_to).unwrap_or("");
    let (status, problem) = match state.core.identity.complete_login(&form.ticket, &form.code, &visitor.client).await {
        Ok(session) => {
            let mut resp =
                Redirect::to(if redirect_to.is_empty() { "/dashboard" } else { redirect_to }).into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.set_session(&session.token));
            return Ok(resp);
        }
        Err(IdentityError::WrongCode) => {
            (StatusCode::UNAUTHORIZED, "That code is not correct, or was already used.".to_owned())
        }
        Err(IdentityError::InvalidLink) => return Ok(Redirect::to("/login?notice=expired").into_response()),
        Err(IdentityError::Throttled(t)) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts. Try again in {} minutes.", t.retry_after.as_secs().div_ceil(60).max(1)),
        ),
        Err(other) => return Err(other.into()),
    };
    let markup = second_step(&visitor.csrf(&state), &form.ticket, redirect_to, Some(&problem));
    Ok(page(status, markup))
}

/// The QR code of an `otpauth://` URI, as SVG markup.
fn qr(uri: &str) -> Markup {
    match QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
            // The renderer starts with an XML declaration, which has no place inside HTML.
            let svg = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]).to_owned();
            html! { div class="qr" role="img" aria-label="QR code of your two-factor secret" { (PreEscaped(svg)) } }
        }
        Err(_) => html! {},
    }
}

fn setup_page(who: &SignedIn, csrf: &str, setup: &Setup, problem: Option<&str>) -> Markup {
    let content = html! {
        div class="page-head" {
            h1 { "Set up two-factor login" }
            p class="muted" { "Once it is on, logging in asks for a code from your phone as well as your password." }
        }
        section class="panel narrow-panel" {
            ol class="steps" {
                li {
                    strong { "Scan this code" } " with an authenticator app (1Password, Google Authenticator, Authy…)."
                    (qr(&setup.uri))
                    p class="small muted" { "Can't scan it? Enter this key in the app instead:" }
                    p { code class="secret" { (setup.secret_base32) } }
                    details class="small" {
                        summary { "The setup link" }
                        p { code class="wrap" { (setup.uri) } }
                    }
                }
                li {
                    strong { "Enter the code" } " the app shows now."
                    @if let Some(p) = problem { (notice(Tone::Bad, p)) }
                    form method="post" action="/dashboard/settings/two-factor/enable" {
                        (layout::csrf_field(csrf))
                        div class="field" {
                            label for="code" { "Code" }
                            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                                required maxlength="12";
                        }
                        button class="btn" type="submit" { "Turn on two-factor login" }
                    }
                }
            }
        }
    };
    layout::app("Two-factor login", Section::Settings, &who.user.email, csrf, content)
}

pub async fn begin(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<SettingsCodeForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    match state.core.identity.begin_two_factor(&who.user, &password, &who.client).await {
        Ok(_) => Ok(Redirect::to("/dashboard/settings/two-factor").into_response()),
        Err(e @ (IdentityError::WrongPassword | IdentityError::Throttled(_) | IdentityError::ReauthRequired)) => {
            let notice = super::settings::refusal_notice(&e, "two_factor_setup_wrong_password");
            Ok(Redirect::to(&format!("/dashboard/settings?notice={notice}#two-factor")).into_response())
        }
        // Already on: nothing to set up.
        Err(IdentityError::Service(layers_core::error::ServiceError::Refused(_))) => {
            Ok(Redirect::to("/dashboard/settings").into_response())
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn show_setup(State(state): State<AppState>, who: SignedIn) -> Result<Response, PageError> {
    match state.core.identity.pending_two_factor(&who.user).await? {
        Some(setup) => Ok(page(StatusCode::OK, setup_page(&who, &who.csrf(&state), &setup, None))),
        None => Ok(Redirect::to("/dashboard/settings").into_response()),
    }
}

pub async fn enable(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<SettingsCodeForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let csrf = who.csrf(&state);
    match state.core.identity.enable_two_factor(&who.user, &form.code, &who.client).await {
        Ok(codes) => Ok(page(StatusCode::OK, recovery_page(&who, &csrf, &codes))),
        Err(IdentityError::WrongCode) => match state.core.identity.pending_two_factor(&who.user).await? {
            Some(setup) => {
                let problem = Some("That code is not correct. Check the time on your phone and try the next one.");
                Ok(page(StatusCode::UNPROCESSABLE_ENTITY, setup_page(&who, &csrf, &setup, problem)))
            }
            None => Ok(Redirect::to("/dashboard/settings").into_response()),
        },
        Err(IdentityError::InvalidLink) => Ok(Redirect::to("/dashboard/settings").into_response()),
        Err(other) => Err(other.into()),
    }
}

fn recovery_page(who: &SignedIn, csrf: &str, codes: &[String]) -> Markup {
    let content = html! {
        div class="page-head" {
            h1 { "Two-factor login is on" }
            p class="muted" { "Save these recovery codes somewhere safe. Each one logs you in once if you lose your phone. They are shown only now." }
        }
        section class="panel narrow-panel" {
            (notice(Tone::Ok, "From now on, logging in asks for a code from your authenticator app."))
            ul class="codes" {
                @for c in codes { li { code { (c) } } }
            }
            a class="btn" href="/dashboard/settings" { "I have saved my recovery codes" }
        }
    };
    layout::app("Recovery codes", Section::Settings, &who.user.email, csrf, content)
}

pub async fn disable(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<SettingsCodeForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    let notice = match state.core.identity.disable_two_factor(&who.user, &password, &form.code, &who.client).await {
        Ok(()) => "two_factor_off",
        Err(IdentityError::WrongCode) => "two_factor_wrong_code",
        Err(e @ (IdentityError::WrongPassword | IdentityError::Throttled(_) | IdentityError::ReauthRequired)) => {
            super::settings::refusal_notice(&e, "two_factor_wrong_password")
        }
        Err(other) => return Err(other.into()),
    };
    Ok(Redirect::to(&format!("/dashboard/settings?notice={notice}#two-factor")).into_response())
}
