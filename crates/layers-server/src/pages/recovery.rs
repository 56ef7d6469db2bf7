//! "Forgot your password?": a single-use link by e-mail, and the page that sets a new password
//! (which logs out every session). Invariant: asking for a link answers the same whether or not
//! the address has an account.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use layers_core::identity::IdentityError;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

use super::auth::{invalid_link, EmailForm, TokenQuery};
use super::layout::{self, notice, Tone};
use super::session::Visitor;
use super::{page, PageError, PageForm};
use crate::state::AppState;

fn forgot_card(csrf: &str) -> Markup {
    html! {
        h1 { "Reset your password" }
        p class="lead" { "Enter the address of your account and we will e-mail you a link to set a new password." }
        form method="post" action="/forgot-password" {
            (layout::csrf_field(csrf))
            (layout::email_field("", true))
            button class="btn block" type="submit" { "E-mail me a link" }
        }
    }
}

fn back_to_login() -> Markup {
    html! { "Remembered it? " a href="/login" { "Log in" } }
}

pub async fn forgot_page(State(state): State<AppState>, visitor: Visitor) -> Response {
    let markup = layout::public("Reset your password", forgot_card(&visitor.csrf(&state)), Some(back_to_login()));
    visitor.with_cookie(page(StatusCode::OK, markup))
}

pub async fn forgot(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<EmailForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, form.csrf())?;
    state.core.identity.forgot_password(form.email(), &visitor.client).await?;
    let minutes = state.core.identity.settings().reset_ttl.as_secs() / 60;
    let card = html! {
        h1 { "Check your inbox" }
        p class="lead" {
            "If an account uses " strong { (form.email()) } ", we sent it a link to set a new password. "
            "The link works once, for " (minutes) " minutes."
        }
        a class="btn secondary block" href="/login" { "Back to login" }
    };
    Ok(page(StatusCode::OK, layout::public("Check your inbox", card, None)))
}

#[derive(Debug, Default, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

fn reset_card(csrf: &str, token: &str, problem: Option<&str>) -> Markup {
    html! {
        h1 { "Choose a new password" }
        p class="lead" { "Setting it logs out every session of your account." }
        @if let Some(p) = problem { (notice(Tone::Bad, p)) }
        form method="post" action="/reset-password" {
            (layout::csrf_field(csrf))
            input type="hidden" name="token" value=(token);
            (layout::password_field("password", "New password", "new-password",
                Some("At least 12 characters. A few unrelated words make a strong one.")))
            button class="btn block" type="submit" { "Set the new password" }
        }
    }
}

pub async fn reset_page(State(state): State<AppState>, visitor: Visitor, Query(q): Query<TokenQuery>) -> Response {
    let markup = layout::public("Choose a new password", reset_card(&visitor.csrf(&state), q.token(), None), None);
    visitor.with_cookie(page(StatusCode::OK, markup))
}

pub async fn reset(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<ResetForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    let problem = match state.core.identity.reset_password(&form.token, &password, &visitor.client).await {
        Ok(()) => {
            let mut resp = Redirect::to("/login?notice=reset").into_response();
            resp.headers_mut().append(http::header::SET_COOKIE, state.cookies.clear_session());
            return Ok(resp);
        }
        Err(IdentityError::WeakPassword(weak)) => weak.message(),
        Err(IdentityError::InvalidLink) => return Ok(invalid_link(&state, &visitor, false)),
        Err(other) => return Err(other.into()),
    };
    let card = reset_card(&visitor.csrf(&state), &form.token, Some(problem));
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, layout::public("Choose a new password", card, None)))
}
