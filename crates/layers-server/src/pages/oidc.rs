//! "Continue with Google": the button's form starts the flow at the identity provider, and
//! `/auth/callback` finishes it (SPEC §6.1). The flow rides in a signed, HttpOnly cookie that
//! lives ten minutes and is cleared at the callback whatever its outcome.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::StatusCode;
use layers_core::identity::{IdentityError, LoginOutcome};
use layers_domain::identity::redirect::same_site_path;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, notice, Tone};
use super::session::Visitor;
use super::{page, PageError, PageForm};
use crate::state::AppState;

/// The "Continue with Google" button, when an identity provider is configured.
pub(super) fn button(state: &AppState, csrf: &str, redirect_to: &str) -> Markup {
    if !state.core.identity.oidc_enabled() {
        return html! {};
    }
    html! {
        form method="post" action="/auth/google" {
            (layout::csrf_field(csrf))
            input type="hidden" name="redirectTo" value=(redirect_to);
            button class="btn secondary block google" type="submit" {
                span class="g" aria-hidden="true" { "G" } "Continue with Google"
            }
        }
        div class="or" { "or" }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "redirectTo")]
    redirect_to: String,
}

pub async fn start(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<StartForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&state, &form.csrf)?;
    let redirect_to = same_site_path(&form.redirect_to).unwrap_or("");
    match state.core.identity.oidc_begin(redirect_to).await {
        Ok((url, flow)) => {
            let mut resp = Redirect::to(&url).into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.set_oidc(&flow));
            Ok(resp)
        }
        Err(IdentityError::OidcUnavailable | IdentityError::OidcRefused) => Ok(failed(&visitor)),
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
}

pub async fn callback(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<Callback>,
) -> Result<Response, PageError> {
    let outcome =
        state.core.identity.oidc_finish(visitor.oidc_flow.as_deref(), &q.code, &q.state, &visitor.client).await;
    let mut resp = match outcome {
        Ok((LoginOutcome::Session(session), redirect_to)) => {
            let target = same_site_path(&redirect_to).filter(|t| !t.is_empty()).unwrap_or("/dashboard");
            let mut resp = Redirect::to(target).into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.set_session(&session.token));
            resp
        }
        Ok((LoginOutcome::SecondFactor(ticket), redirect_to)) => {
            let redirect_to = same_site_path(&redirect_to).unwrap_or("");
            page(StatusCode::OK, super::two_factor::second_step(&visitor.csrf(&state), &ticket.0, redirect_to, None))
        }
        Err(IdentityError::Suspended) => {
            let card = html! {
                h1 { "Log in" }
                (notice(Tone::Bad, "This account is suspended. Write to support to restore it."))
            };
            page(StatusCode::FORBIDDEN, layout::public("Log in", card, None))
        }
        Err(IdentityError::OidcUnavailable | IdentityError::OidcRefused) => failed(&visitor),
        Err(other) => return Err(other.into()),
    };
    resp.headers_mut().append(SET_COOKIE, state.cookies.clear_oidc());
    Ok(visitor.with_cookie(resp))
}

/// The provider's answer failed a check (the reason is in the server log).
fn failed(visitor: &Visitor) -> Response {
    let card = html! {
        h1 { "Google sign-in did not work" }
        (notice(Tone::Bad, "We could not confirm who you are with Google. Nothing was changed. Try again, or log in with your e-mail address."))
        a class="btn block" href="/login" { "Back to login" }
    };
    visitor.with_cookie(page(StatusCode::BAD_REQUEST, layout::public("Sign-in failed", card, None)))
}
