//! `/dashboard/settings`: the account, its password, its sessions (device, address, last seen)
//! with "revoke" and "log out everywhere", and its recent security activity.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::StatusCode;
use layers_core::identity::two_factor::Status;
use layers_core::identity::{Activity, IdentityError, SessionInfo};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::format::{address, device, event_label, when};
use super::layout::{self, notice, Section, Tone};
use super::session::SignedIn;
use super::{page, PageError, PageForm};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    notice: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
}

struct View<'a> {
    csrf: String,
    two_factor: Status,
    notice: Option<Markup>,
    password_problem: Option<&'a str>,
    sessions: Vec<SessionInfo>,
    activity: Vec<Activity>,
}

fn render(who: &SignedIn, v: View<'_>) -> Markup {
    let user = &who.user;
    let content = html! {
        div class="page-head" {
            h1 { "Settings" }
            p class="muted" { "Your account, how you log in, and where you are logged in." }
        }
        @if let Some(n) = &v.notice { (n) }
        div class="grid-2" {
            section class="panel" {
                h2 { "Account" }
                table {
                    tr { th { "E-mail" } td { (user.email) } }
                    tr { th { "Plan" } td { span class="badge brand" { (user.tier.to_string()) } } }
                    tr { th { "Logged in" } td { (when(user.times.authenticated_at)) " UTC" } }
                }
                details class="change-email" id="email" {
                    summary { "Change e-mail address" }
                    form method="post" action="/dashboard/settings/email" {
                        (layout::csrf_field(&v.csrf))
                        div class="field" {
                            label for="new-email" { "New e-mail address" }
                            input id="new-email" name="email" type="email" autocomplete="email" required maxlength="254";
                        }
                        div class="field" {
                            label for="email-password" { "Your password" }
                            input id="email-password" name="password" type="password" autocomplete="current-password" required maxlength="256";
                            span class="hint" { "We send a link to the new address; the change happens when it is used." }
                        }
                        button class="btn secondary" type="submit" { "Send the confirmation link" }
                    }
                }
            }
            section class="panel" id="change-password" {
                h2 { "Password" }
                p class="muted small" { "Changing it logs out every other session." }
                @if let Some(p) = v.password_problem { (notice(Tone::Bad, p)) }
                form method="post" action="/dashboard/settings/password" {
                    (layout::csrf_field(&v.csrf))
                    (layout::password_field("current", "Current password", "current-password", None))
                    (layout::password_field("new", "New password", "new-password", Some("At least 12 characters.")))
                    button class="btn" type="submit" { "Change password" }
                }
            }
        }
        (two_factor_panel(&v.csrf, v.two_factor))
        section class="panel" id="sessions" {
            div class="panel-head" {
                div {
                    h2 { "Sessions" }
                    p class="muted small" { "Where your account is logged in now." }
                }
                form method="post" action="/dashboard/settings/sessions/everywhere" {
                    (layout::csrf_field(&v.csrf))
                    button class="btn danger small" type="submit" { "Log out everywhere" }
                }
            }
            div class="table-wrap" {
                table {
                    thead { tr { th { "Device" } th class="optional" { "Address" } th class="optional" { "Logged in" } th { "Last seen (UTC)" } th {} } }
                    tbody {
                        @for s in &v.sessions {
                            tr {
                                td {
                                    (device(s.user_agent.as_deref()))
                                    @if s.id == user.session_id { " " span class="badge ok" { "This browser" } }
                                    span class="phone-only muted small mono" { (address(s.ip)) }
                                }
                                td class="mono optional" { (address(s.ip)) }
                                td class="optional when" { (when(s.created_at)) }
                                td class="when" { (when(s.last_seen_at)) }
                                td class="actions" {
                                    @if s.id != user.session_id {
                                        form method="post" action="/dashboard/settings/sessions/revoke" {
                                            (layout::csrf_field(&v.csrf))
                                            input type="hidden" name="session" value=(s.id);
                                            button class="btn secondary small" type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div class="grid-2" {
            section class="panel" id="export" {
                h2 { "Your data" }
                p class="muted small" { "Everything we keep about your account, as one JSON file: your keys (names, never secrets), the ledger, every request's usage, sessions and security activity." }
                form method="post" action="/dashboard/settings/export" {
                    (layout::csrf_field(&v.csrf))
                    button class="btn secondary" type="submit" { "Export my data" }
                }
            }
            section class="panel danger-zone" id="delete" {
                h2 { "Delete my account" }
                p class="muted small" { "Your keys stop working at once and your personal data is erased. Billing records are kept, without your name or address, as the law requires. This cannot be undone." }
                form method="post" action="/dashboard/settings/delete" {
                    (layout::csrf_field(&v.csrf))
                    div class="field" {
                        label for="delete-password" { "Your password, to confirm" }
                        input id="delete-password" name="password" type="password" autocomplete="current-password" required maxlength="256";
                    }
                    button class="btn danger" type="submit" { "Delete my account" }
                }
            }
        }
        section class="panel" id="activity" {
            h2 { "Security activity" }
            @if v.activity.is_empty() {
                p class="muted" { "Nothing yet." }
            } @else {
                div class="table-wrap" {
                    table {
                        thead { tr { th { "Event" } th { "Address" } th class="optional" { "Device" } th { "When (UTC)" } } }
                        tbody {
                            @for e in &v.activity {
                                tr {
                                    td { (event_label(&e.kind)) }
                                    td class="mono" { (e.ip.map_or_else(|| "—".to_owned(), |ip| ip.to_string())) }
                                    td class="optional" { (device(e.user_agent.as_deref())) }
                                    td class="when" { (when(e.at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::app("Settings", Section::Settings, &user.email, &v.csrf, content)
}

async fn view<'a>(
    state: &AppState,
    who: &SignedIn,
    notice: Option<Markup>,
    problem: Option<&'a str>,
) -> Result<View<'a>, PageError> {
    Ok(View {
        csrf: who.csrf(state),
        two_factor: state.core.identity.two_factor_status(who.user.user_id).await?,
        notice,
        password_problem: problem,
        sessions: state.core.identity.sessions(who.user.user_id).await?,
        activity: state.core.identity.activity(who.user.user_id, 20).await?,
    })
}

/// The notice of a refused confirmation: `wrong_password`'s, or the throttle's, or "log in again".
pub(super) fn refusal_notice(err: &IdentityError, wrong_password: &'static str) -> &'static str {
    match err {
        IdentityError::Throttled(_) => "throttled",
        IdentityError::ReauthRequired => "reauth",
        _ => wrong_password,
    }
}

fn settings_notice(code: &str) -> Option<Markup> {
    let (tone, text) = match code {
        "password" => (Tone::Ok, "Your password was changed. Every other session was logged out."),
        "revoked" => (Tone::Ok, "The session was logged out."),
        "two_factor_off" => (Tone::Ok, "Two-factor login is off."),
        "throttled" => (Tone::Bad, "Too many attempts. Nothing was changed; try again in 15 minutes."),
        "reauth" => (Tone::Bad, "Nothing was changed: for this, log out and log in again first."),
        "two_factor_setup_wrong_password" => {
            (Tone::Bad, "Two-factor login was not set up: the password was not correct.")
        }
        "email_sent" => (Tone::Ok, "We sent a link to the new address. Your address changes when it is used."),
        "email_invalid" => (Tone::Bad, "That is not a valid e-mail address."),
        "email_wrong_password" => (Tone::Bad, "Your address was not changed: the password was not correct."),
        "email_changed" => (Tone::Ok, "Your account now uses its new e-mail address."),
        "delete_wrong_password" => (Tone::Bad, "Your account was not deleted: the password was not correct."),
        "two_factor_wrong_password" => (Tone::Bad, "Two-factor login is still on: the password was not correct."),
        "two_factor_wrong_code" => {
            (Tone::Bad, "Two-factor login is still on: that code was not correct, or was already used.")
        }
        _ => return None,
    };
    Some(notice(tone, text))
}

fn two_factor_panel(csrf: &str, status: Status) -> Markup {
    html! {
        section class="panel" id="two-factor" {
            div class="panel-head" {
                div {
                    h2 { "Two-factor login" }
                    p class="muted small" { "A code from an authenticator app on your phone, asked at every login." }
                }
                @match status {
                    Status::On { .. } => span class="badge ok" { "On" },
                    _ => span class="badge" { "Off" },
                }
            }
            @match status {
                Status::Off => {
                    form method="post" action="/dashboard/settings/two-factor/setup" class="narrow" {
                        (layout::csrf_field(csrf))
                        div class="field" {
                            label for="setup-password" { "Your password" }
                            input id="setup-password" name="password" type="password" autocomplete="current-password" maxlength="256";
                        }
                        button class="btn" type="submit" { "Set up two-factor login" }
                    }
                }
                Status::Pending => {
                    p { "You started setting it up. " a href="/dashboard/settings/two-factor" { "Finish setting it up" } "." }
                }
                Status::On { recovery_codes_left } => {
                    p class="small" { (recovery_codes_left) " of 10 recovery codes left." }
                    form method="post" action="/dashboard/settings/two-factor/disable" class="narrow" {
                        (layout::csrf_field(csrf))
                        div class="field" {
                            label for="tf-password" { "Password" }
                            input id="tf-password" name="password" type="password" autocomplete="current-password" required maxlength="256";
                        }
                        div class="field" {
                            label for="tf-code" { "Code" }
                            input id="tf-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="32";
                        }
                        button class="btn secondary" type="submit" { "Turn off two-factor login" }
                    }
                }
            }
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<SettingsQuery>,
) -> Result<Response, PageError> {
    let v = view(&state, &who, settings_notice(&q.notice), None).await?;
    Ok(page(StatusCode::OK, render(&who, v)))
}

pub async fn change_password(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<PasswordForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let (current, new) = (SecretString::from(form.current), SecretString::from(form.new));
    let problem = match state.core.identity.change_password(&who.user, &current, &new, &who.client).await {
        Ok(session) => {
            let mut resp = Redirect::to("/dashboard/settings?notice=password").into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.set_session(&session.token));
            return Ok(resp);
        }
        Err(IdentityError::WrongPassword) => "The current password is not correct.",
        Err(IdentityError::Throttled(_)) => "Too many attempts. Try again in 15 minutes.",
        Err(IdentityError::ReauthRequired) => "Log out and log in again, then set your password.",
        Err(IdentityError::WeakPassword(weak)) => weak.message(),
        Err(other) => return Err(other.into()),
    };
    let v = view(&state, &who, None, Some(problem)).await?;
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render(&who, v)))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<RevokeForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let id = Uuid::parse_str(&form.session).map_err(|_| PageError::BadForm)?;
    state.core.identity.revoke_session(&who.user, id, &who.client).await?;
    Ok(Redirect::to("/dashboard/settings?notice=revoked").into_response())
}

pub async fn log_out_everywhere(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<super::auth::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    state.core.identity.log_out_everywhere(&who.user, &who.client).await?;
    let mut resp = Redirect::to("/login?notice=everywhere").into_response();
    resp.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
pub struct EmailChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn change_email(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<EmailChangeForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    let notice = match state.core.identity.request_email_change(&who.user, &form.email, &password, &who.client).await {
        Ok(()) => "email_sent",
        Err(IdentityError::InvalidEmail) => "email_invalid",
        Err(e @ (IdentityError::WrongPassword | IdentityError::Throttled(_) | IdentityError::ReauthRequired)) => {
            refusal_notice(&e, "email_wrong_password")
        }
        Err(other) => return Err(other.into()),
    };
    Ok(Redirect::to(&format!("/dashboard/settings?notice={notice}")).into_response())
}
