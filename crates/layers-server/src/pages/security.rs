//! `/dashboard/security`: the account's own audit trail (logins, keys, alerts, blocks) with
//! filters, and the incident panel: one confirmed action that turns every live key off and ends
//! every session, for the moment a leak is suspected.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use http::StatusCode;
use layers_core::identity::IdentityError;
use layers_core::records::{AuditEvent, AuditFilter};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

use std::collections::HashMap;

use super::format::{address, device, event_label, when};
use super::layout::{self, notice, Section, Tone};
use super::session::SignedIn;
use super::{page, PageError, PageForm};
use crate::state::AppState;

const EVENTS: u32 = 200;

/// The groups of events the filter offers: (value, label, event types).
const GROUPS: [(&str, &str, &[&str]); 4] = [
    (
        "logins",
        "Logins and sessions",
        &[
            "login_succeeded",
            "login_failed",
            "login_throttled",
            "logout",
            "session_revoked",
            "sessions_revoked",
            "two_factor_failed",
            "recovery_code_used",
            "identity_linked",
        ],
    ),
    (
        "keys",
        "API keys",
        &[
            "key_created",
            "key_deactivated",
            "key_reactivated",
            "key_deleted",
            "key_rotated",
            "key_limits_changed",
            "key_expiry_reminder",
        ],
    ),
    ("alerts", "Alerts", &["alert_sent", "alerts_changed"]),
    (
        "account",
        "Account and security",
        &[
            "password_changed",
            "password_reset",
            "password_reset_requested",
            "two_factor_enabled",
            "two_factor_disabled",
            "email_changed",
            "email_change_requested",
            "data_exported",
            "incident_lockdown",
            "ip_blocked",
        ],
    ),
];

const SINCE: [(&str, &str, i64); 4] =
    [("1", "Last 24 hours", 1), ("7", "Last 7 days", 7), ("30", "Last 30 days", 30), ("", "All time", 0)];

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    group: String,
    #[serde(default)]
    since: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LockDownForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let content = render(&state, &who, &q, None).await?;
    Ok(page(StatusCode::OK, content))
}

async fn render(state: &AppState, who: &SignedIn, q: &EventsQuery, problem: Option<&str>) -> Result<Markup, PageError> {
    let now = state.core.dashboard.now();
    let filter = AuditFilter {
        types: GROUPS
            .iter()
            .find(|(v, _, _)| *v == q.group)
            .map(|(_, _, t)| t.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default(),
        since: SINCE.iter().find(|(v, _, d)| *v == q.since && *d > 0).map(|(_, _, d)| now - time::Duration::days(*d)),
        before: None,
    };
    let events =
        state.core.dashboard.security_events(who.user.user_id, &filter, EVENTS).await.map_err(PageError::service)?;
    let names: HashMap<String, String> = state
        .core
        .keys
        .list(who.user.user_id)
        .await
        .map_err(PageError::service)?
        .into_iter()
        .map(|k| (k.id.to_string(), format!("{} ({}…{})", k.name, k.display_prefix, k.last4)))
        .collect();
    let csrf = who.csrf(state);
    let content = html! {
        div class="page-head" {
            h1 { "Security" }
            p class="muted" { "What happened to your account, and what to do if a key leaks. Times are UTC." }
        }
        section class="panel danger-zone" id="lock-down" {
            div class="panel-head" {
                div {
                    h2 { "Incident: lock down" }
                    p class="muted small" { "Suspect a leaked key or a stolen login? This deactivates every live key (every request with them is refused within a second) and logs out every session, this one included. You can reactivate keys one by one afterwards." }
                }
            }
            @if let Some(p) = problem { (notice(Tone::Bad, p)) }
            form method="post" action="/dashboard/security/lock-down" class="narrow" {
                (layout::csrf_field(&csrf))
                div class="field" {
                    label for="lock-password" { "Your password, to confirm" }
                    input id="lock-password" name="password" type="password" autocomplete="current-password" required maxlength="256";
                }
                label class="choice" { input type="checkbox" name="confirm" value="yes" required; " Turn off every key and end every session" }
                button class="btn danger" type="submit" { "Lock down my account" }
            }
        }
        section class="panel" id="events" {
            div class="panel-head" {
                h2 { "Security events" }
                form method="get" action="/dashboard/security" class="inline-filters" {
                    select name="group" aria-label="Kind of event" {
                        option value="" { "Every event" }
                        @for (value, label, _) in GROUPS {
                            @if value == q.group { option value=(value) selected { (label) } } @else { option value=(value) { (label) } }
                        }
                    }
                    select name="since" aria-label="Since" {
                        @for (value, label, _) in SINCE {
                            @if value == q.since { option value=(value) selected { (label) } } @else { option value=(value) { (label) } }
                        }
                    }
                    button class="btn secondary small" type="submit" { "Filter" }
                }
            }
            (events_table(&events, &names))
        }
    };
    Ok(layout::app("Security", Section::Security, &who.user.email, &csrf, content))
}

/// What an event was about, from its metadata (never more than the account's own names).
fn detail(e: &AuditEvent, names: &HashMap<String, String>) -> String {
    let m = &e.metadata;
    let text = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let number = |k: &str| m.get(k).and_then(serde_json::Value::as_i64);
    match e.event_type.as_str() {
        t if t.starts_with("key_") => text("key_id")
            .map(|id| names.get(&id).cloned().unwrap_or_else(|| "a deleted key".to_owned()))
            .unwrap_or_default(),
        "alert_sent" => match (text("kind").as_deref(), number("threshold")) {
            (Some("low_balance"), _) => "Low balance".to_owned(),
            (Some("key_limit"), Some(t)) => format!(
                "{} at {t}% of its limit",
                text("subject").and_then(|id| names.get(&id).cloned()).unwrap_or_else(|| "A key".to_owned())
            ),
            _ => String::new(),
        },
        "incident_lockdown" => format!(
            "{} keys deactivated, {} sessions ended",
            number("keys_deactivated").unwrap_or(0),
            number("sessions_ended").unwrap_or(0)
        ),
        "tier_changed" => text("tier").map(|t| format!("Now {t}")).unwrap_or_default(),
        "credits_granted" | "credits_adjusted" => number("micro_credits")
            .map(|m| format!("{} credits", super::format::credits(layers_domain::MicroCredits(m))))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn events_table(events: &[AuditEvent], names: &HashMap<String, String>) -> Markup {
    html! {
        @if events.is_empty() {
            p class="muted" { "No events match." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr { th { "Event" } th { "Details" } th { "When" } th class="optional" { "Address" } th class="optional" { "Device" } } }
                    tbody {
                        @for e in events {
                            tr data-event=(e.event_type) class=(severity_class(e)) {
                                td { (event_label(&e.event_type)) }
                                td class="small" { (detail(e, names)) }
                                td class="when" { (when(e.created_at)) }
                                td class="mono optional" { (e.ip_address.map_or_else(|| "—".to_owned(), |ip| address(Some(ip)))) }
                                td class="optional" { (e.user_agent.as_deref().map_or_else(|| "—".to_owned(), |ua| device(Some(ua)))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn severity_class(e: &AuditEvent) -> &'static str {
    match e.severity {
        layers_core::records::Severity::Critical => "sev-critical",
        layers_core::records::Severity::Warning => "sev-warning",
        layers_core::records::Severity::Info => "",
    }
}

pub async fn lock_down(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<LockDownForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let problem = if form.confirm != "yes" {
        "Tick the box to confirm: nothing was changed."
    } else {
        match state.core.lock_down(&who.user, &SecretString::from(form.password), &who.client).await {
            Ok(done) => {
                let card = html! {
                    h1 { "Your account is locked down" }
                    p class="lead" data-test="lock-down-result" {
                        (done.keys_deactivated) (if done.keys_deactivated == 1 { " key was" } else { " keys were" }) " deactivated and "
                        (done.sessions_ended) (if done.sessions_ended == 1 { " session was" } else { " sessions were" }) " ended."
                    }
                    p { "Every node refuses those keys within a second. Next: log in again, change your password if it may be known, create new keys (or reactivate the ones you trust) and give them to your code." }
                    a class="btn" href="/login" { "Log in again" }
                };
                let mut resp = page(StatusCode::OK, layout::public("Locked down", card, None));
                resp.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
                return Ok(resp.into_response());
            }
            Err(IdentityError::WrongPassword) => "The password was not correct: nothing was changed.",
            Err(IdentityError::Throttled(_)) => "Too many attempts. Nothing was changed; try again in 15 minutes.",
            Err(IdentityError::ReauthRequired) => "Nothing was changed: log out and log in again first.",
            Err(other) => return Err(other.into()),
        }
    };
    let content = render(&state, &who, &EventsQuery::default(), Some(problem)).await?;
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, content))
}
