//! `/dashboard/keys`: create keys (the full key shown once), list them with their spend, change
//! their limits, rotate, deactivate, reactivate and delete them; the hygiene view; the alerts.
//! Every change goes through the key service (audited, refused by every node within a second).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use layers_core::alerts::AlertChange;
use layers_core::dashboard::Hygiene;
use layers_core::keys::{CreatedKey, NewKeyRequest, DEFAULT_OVERLAP};
use layers_core::records::{CapOverrides, KeyLimits, KeyRecord, KeyState};
use layers_domain::dashboard::{alerts as alert_rules, SpendPeriod};
use layers_domain::{KeyEnv, KeyId, MicroCredits};
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

use super::format::{credits, date, timestamp, when};
use super::layout::{self, notice, Section, Tone};
use super::session::SignedIn;
use super::{page, PageError, PageForm};
use crate::state::AppState;

/// Expiry presets offered at creation, in days.
const EXPIRY_PRESETS: [(&str, &str); 5] =
    [("never", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")];
/// Overlaps offered for a rotation: (seconds, label).
const OVERLAPS: [(u64, &str); 4] =
    [(0, "None: refuse it now"), (3_600, "1 hour"), (86_400, "24 hours"), (604_800, "7 days")];

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    notice: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    spend_limit: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    expires: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    spend_limit: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    per_request: String,
    #[serde(default)]
    per_hour: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    overlap_secs: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct StateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    low_balance: String,
    #[serde(default)]
    key_thresholds: String,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    new_secret: String,
}

/// An optional amount of credits from a form field (empty: none).
fn amount(field: &str) -> Result<Option<MicroCredits>, &'static str> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    match MicroCredits::parse_credits(field) {
        Ok(m) if m.is_positive() => Ok(Some(m)),
        _ => Err("Amounts are credits, like 25 or 2.50, more than zero."),
    }
}

fn label(k: &KeyRecord) -> String {
    format!("{}…{}", k.display_prefix, k.last4)
}

/// The state people read: active, expired, deactivated.
fn state_badge(k: &KeyRecord, now: OffsetDateTime) -> Markup {
    match k.state {
        KeyState::Active if k.expires_at.is_some_and(|t| t <= now) => html! { span class="badge warn" { "Expired" } },
        KeyState::Active => html! { span class="badge ok" { "Active" } },
        KeyState::Deactivated => html! { span class="badge" { "Deactivated" } },
        KeyState::Deleted => html! { span class="badge" { "Deleted" } },
    }
}

fn env_badge(env: KeyEnv) -> Markup {
    match env {
        KeyEnv::Live => html! { span class="badge brand" { "live" } },
        KeyEnv::Test => html! { span class="badge" { "test" } },
    }
}

fn spend_cell(k: &KeyRecord, spent: MicroCredits) -> Markup {
    html! {
        @match k.spend_limit {
            Some(limit) => {
                span class="num" { (credits(spent)) " / " (credits(limit)) }
                span class="muted small block" { (k.limit_period.label()) }
            }
            None => { span class="num" { (credits(k.spent)) } span class="muted small block" { "no limit" } }
        }
    }
}

struct ListView {
    keys: Vec<KeyRecord>,
    spend: HashMap<KeyId, MicroCredits>,
    hygiene: Hygiene,
    alerts: layers_core::alerts::AlertView,
    notice: Option<Markup>,
    create_problem: Option<&'static str>,
    alerts_problem: Option<&'static str>,
}

async fn list_view(state: &AppState, who: &SignedIn) -> Result<ListView, PageError> {
    let user = who.user.user_id;
    let keys: Vec<KeyRecord> = state
        .core
        .keys
        .list(user)
        .await
        .map_err(PageError::service)?
        .into_iter()
        .filter(|k| k.state != KeyState::Deleted)
        .collect();
    let spend = state.core.dashboard.key_spend(user, &keys).await.map_err(PageError::service)?;
    let hygiene = state.core.dashboard.hygiene(&keys);
    let alerts = state.core.alerts.settings(user).await.map_err(PageError::service)?;
    Ok(ListView { keys, spend, hygiene, alerts, notice: None, create_problem: None, alerts_problem: None })
}

fn render_list(state: &AppState, who: &SignedIn, v: &ListView) -> Markup {
    let csrf = who.csrf(state);
    let now = state.core.dashboard.now();
    let content = html! {
        div class="page-head" {
            h1 { "API keys" }
            p class="muted" { "Keys for your code. A live key spends your credits; a test key reaches only the free sandbox." }
        }
        @if let Some(n) = &v.notice { (n) }
        section class="panel" id="create" {
            h2 { "Create a key" }
            @if let Some(p) = v.create_problem { (notice(Tone::Bad, p)) }
            form method="post" action="/dashboard/keys" class="form-grid" {
                (layout::csrf_field(&csrf))
                div class="field" {
                    label for="key-name" { "Name" }
                    input id="key-name" name="name" type="text" required maxlength="100" placeholder="e.g. production backend";
                }
                div class="field" {
                    span class="label" { "Environment" }
                    div class="choices" {
                        label class="choice" { input type="radio" name="env" value="live" checked; " Live" }
                        label class="choice" { input type="radio" name="env" value="test"; " Test (sandbox, never billed)" }
                    }
                }
                div class="field" {
                    label for="key-limit" { "Spend limit (credits, optional)" }
                    div class="inline" {
                        input id="key-limit" name="spend_limit" type="text" inputmode="decimal" maxlength="20" placeholder="no limit";
                        select name="period" aria-label="Limit period" {
                            @for p in [SpendPeriod::Month, SpendPeriod::Week, SpendPeriod::Day, SpendPeriod::Total] {
                                option value=(p.as_str()) { (p.label()) }
                            }
                        }
                    }
                    span class="hint" { "Calendar limits reset at 00:00 UTC (weeks on Monday, months on the 1st)." }
                }
                div class="field" {
                    label for="key-expires" { "Expires" }
                    select id="key-expires" name="expires" {
                        @for (value, text) in EXPIRY_PRESETS {
                            @if value == "90" { option value=(value) selected { (text) } } @else { option value=(value) { (text) } }
                        }
                    }
                    span class="hint" { "We e-mail you 7 days and 1 day before." }
                }
                div class="form-actions" { button class="btn" type="submit" { "Create key" } }
            }
        }
        section class="panel" id="keys" {
            h2 { "Your keys" }
            @if v.keys.is_empty() {
                p class="muted" { "No keys yet. Create one above." }
            } @else {
                div class="table-wrap" {
                    table {
                        thead { tr {
                            th { "Name" } th class="optional" { "Key" } th { "State" } th class="optional" { "Created" }
                            th class="optional" { "Last used" } th class="num" { "Spend" } th {}
                        } }
                        tbody {
                            @for k in &v.keys {
                                tr data-key-id=(k.id) {
                                    td {
                                        a href=(format!("/dashboard/keys/{}", k.id)) { (k.name) } " " (env_badge(k.env))
                                        span class="phone-only mono muted small" { (label(k)) }
                                    }
                                    td class="mono optional" { (label(k)) }
                                    td { (state_badge(k, now)) }
                                    td class="optional when" { (date(k.created_at)) }
                                    td class="optional when" { (k.last_used_at.map_or_else(|| "never".to_owned(), when)) }
                                    td class="num" { (spend_cell(k, v.spend.get(&k.id).copied().unwrap_or_default())) }
                                    td class="actions" {
                                        form method="post" action=(format!("/dashboard/keys/{}/state", k.id)) {
                                            (layout::csrf_field(&csrf))
                                            @if k.state == KeyState::Active {
                                                input type="hidden" name="action" value="deactivate";
                                                button class="btn secondary small" type="submit" { "Deactivate" }
                                            } @else {
                                                input type="hidden" name="action" value="reactivate";
                                                button class="btn secondary small" type="submit" { "Reactivate" }
                                            }
                                        }
                                        a class="btn secondary small" href=(format!("/dashboard/keys/{}", k.id)) { "Manage" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (hygiene_panel(&v.hygiene))
        (alerts_panel(&csrf, v))
    };
    layout::app("API keys", Section::Keys, &who.user.email, &csrf, content)
}

fn hygiene_panel(h: &Hygiene) -> Markup {
    let groups: [(&str, &str, &Vec<KeyRecord>); 3] = [
        ("No spend limit", "A leaked key without a limit can spend your whole balance.", &h.no_limit),
        ("No expiry", "Keys that never expire outlive the code that used them.", &h.no_expiry),
        ("Unused for 30 days", "Deactivate keys nothing uses.", &h.unused),
    ];
    html! {
        section class="panel" id="hygiene" {
            h2 { "Key hygiene" }
            @if groups.iter().all(|(_, _, keys)| keys.is_empty()) {
                p class="muted" { "Every live key has a limit and an expiry, and is in use. Well kept." }
            } @else {
                div class="hygiene" {
                    @for (title, why, keys) in groups {
                        div class="hygiene-group" {
                            h3 { (title) " " span class="badge" { (keys.len()) } }
                            p class="muted small" { (why) }
                            ul class="plain" {
                                @for k in keys.iter() {
                                    li { a href=(format!("/dashboard/keys/{}", k.id)) { (k.name) } " " span class="mono muted small" { (label(k)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alerts_panel(csrf: &str, v: &ListView) -> Markup {
    let a = &v.alerts;
    let thresholds = a.key_thresholds.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    html! {
        section class="panel" id="alerts" {
            h2 { "Alerts" }
            p class="muted small" { "Each alert is sent once per period, by e-mail and, if you add one, to your webhook." }
            @if let Some(p) = v.alerts_problem { (notice(Tone::Bad, p)) }
            form method="post" action="/dashboard/keys/alerts" class="form-grid" {
                (layout::csrf_field(csrf))
                div class="field" {
                    label for="low-balance" { "Low balance (credits)" }
                    input id="low-balance" name="low_balance" type="text" inputmode="decimal" maxlength="20" placeholder="off"
                        value=(a.low_balance.map(|m| m.credits_text()).unwrap_or_default());
                    span class="hint" { "Once each time your balance falls below it (again after each top-up)." }
                }
                div class="field" {
                    label for="key-thresholds" { "Key limit thresholds (%)" }
                    input id="key-thresholds" name="key_thresholds" type="text" maxlength="40" placeholder="e.g. 50, 80, 100" value=(thresholds);
                    span class="hint" { "For keys with a spend limit: once per threshold and limit period." }
                }
                div class="field wide" {
                    label for="webhook-url" { "Webhook URL (optional)" }
                    input id="webhook-url" name="webhook_url" type="text" inputmode="url" maxlength="2000" placeholder="https://example.com/hooks/layers"
                        value=(a.webhook_url.clone().unwrap_or_default());
                    span class="hint" {
                        "We POST JSON signed in the header " code { "Layers-Signature: t=…,v1=…" }
                        " (HMAC-SHA-256 of " code { "t.body" } " with the secret below). See the README for how to verify it."
                    }
                }
                @if let Some(secret) = &a.webhook_secret {
                    div class="field wide" {
                        label for="webhook-secret" { "Signing secret" }
                        input id="webhook-secret" type="text" readonly value=(secret) class="mono copy-source";
                        label class="choice" { input type="checkbox" name="new_secret" value="1"; " Make a new secret when I save (the old one stops verifying)" }
                    }
                }
                div class="form-actions" { button class="btn" type="submit" { "Save alerts" } }
            }
        }
    }
}

fn list_notice(code: &str) -> Option<Markup> {
    let (tone, text) = match code {
        "deactivated" => (Tone::Ok, "The key is deactivated: every request with it is refused within a second."),
        "reactivated" => (Tone::Ok, "The key is active again."),
        "deleted" => (Tone::Ok, "The key is deleted: every request with it is refused within a second."),
        "limits" => (Tone::Ok, "The key's limits are saved and apply at once."),
        "alerts" => (Tone::Ok, "Your alerts are saved."),
        _ => return None,
    };
    Some(notice(tone, text))
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<Notice>,
) -> Result<Response, PageError> {
    let mut v = list_view(&state, &who).await?;
    v.notice = list_notice(&q.notice);
    Ok(page(StatusCode::OK, render_list(&state, &who, &v)))
}

pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<CreateForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let created = match create_key(&state, &who, form).await? {
        Ok(created) => created,
        Err(problem) => {
            let mut v = list_view(&state, &who).await?;
            v.create_problem = Some(problem);
            return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render_list(&state, &who, &v)));
        }
    };
    Ok(page(StatusCode::OK, render_secret(&state, &who, &created, None)))
}

/// Creates the key the form describes: the key, or what the person must change.
async fn create_key(
    state: &AppState,
    who: &SignedIn,
    form: CreateForm,
) -> Result<Result<CreatedKey, &'static str>, PageError> {
    let env = match form.env.as_str() {
        "test" => KeyEnv::Test,
        _ => KeyEnv::Live,
    };
    let spend_limit = match amount(&form.spend_limit) {
        Ok(v) => v,
        Err(p) => return Ok(Err(p)),
    };
    let period = SpendPeriod::parse(&form.period).unwrap_or_default();
    let now = state.core.dashboard.now();
    let expires_at = match form.expires.as_str() {
        "" | "never" => None,
        days => match days.parse::<i64>() {
            Ok(d) if (1..=730).contains(&d) => Some(now + time::Duration::days(d)),
            _ => return Ok(Err("Choose one of the expiry presets.")),
        },
    };
    let req = NewKeyRequest {
        user: who.user.user_id,
        env,
        name: form.name,
        spend_limit,
        limit_period: period,
        expires_at,
        created_at: None,
    };
    let created = match state.core.keys.for_client(&who.client).create(req).await {
        Ok(c) => c,
        Err(layers_core::ServiceError::Invalid(p)) => return Ok(Err(p)),
        Err(e) => return Err(PageError::service(e)),
    };
    Ok(Ok(created))
}

/// The page that shows a full key, once.
fn render_secret(state: &AppState, who: &SignedIn, created: &CreatedKey, old_until: Option<OffsetDateTime>) -> Markup {
    let csrf = who.csrf(state);
    let k = &created.record;
    let content = html! {
        div class="page-head" {
            h1 { @if old_until.is_some() { "Your key's new secret" } @else { "Your new key" } }
            p class="muted" { (k.name) " " (env_badge(k.env)) }
        }
        section class="panel secret-panel" {
            (notice(Tone::Ok, "Copy it now: this is the only time it is shown. We keep only a hash of it."))
            div class="field" {
                label for="new-key" { "API key" }
                div class="copy-row" {
                    input id="new-key" name="new_key" class="mono copy-source" type="text" readonly value=(created.key.expose()) autofocus;
                    button class="btn secondary copy-button" type="button" data-copy="new-key" hidden { "Copy" }
                }
                span class="hint" { "Select the field and copy it. It starts with " code { (k.display_prefix) } " and ends with " code { (k.last4) } "." }
            }
            @if let Some(until) = old_until {
                p { "The old secret keeps working until " strong { (timestamp(until)) } ", then every request with it is refused. Give the new one to your code before then." }
            }
            pre class="snippet" { code {
                "curl " (state.public_url()) "/v1/chat/completions \\\n  -H \"Authorization: Bearer $LAYERS_API_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"model\": \"" (if k.env == KeyEnv::Test { "sandbox/echo" } else { "openai/gpt-5-mini" }) "\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
            } }
            div class="row-actions" {
                a class="btn" href="/dashboard/keys" { "I have saved it" }
                a class="btn secondary" href=(format!("/dashboard/keys/{}", k.id)) { "Set its limits" }
            }
        }
    };
    layout::app("Your new key", Section::Keys, &who.user.email, &csrf, content)
}

/// What a key spent in its limit's period, as the detail page labels it.
fn spent_label(period: SpendPeriod) -> &'static str {
    match period {
        SpendPeriod::Total => "Spent against the limit",
        SpendPeriod::Day => "Spent today (UTC)",
        SpendPeriod::Week => "Spent this week",
        SpendPeriod::Month => "Spent this month",
    }
}

fn key_id(raw: &str) -> Result<KeyId, PageError> {
    raw.parse().map_err(|_| PageError::NotFound)
}

async fn own_key(state: &AppState, who: &SignedIn, id: KeyId) -> Result<KeyRecord, PageError> {
    match state.core.keys.get(who.user.user_id, id).await {
        Ok(k) if k.state != KeyState::Deleted => Ok(k),
        Ok(_) | Err(layers_core::ServiceError::NotFound(_)) => Err(PageError::NotFound),
        Err(e) => Err(PageError::service(e)),
    }
}

fn detail_notice(code: &str) -> Option<Markup> {
    match code {
        "limits" => Some(notice(Tone::Ok, "The key's limits are saved and apply at once.")),
        "retired" => Some(notice(Tone::Ok, "The old secret is refused from now on, on every node within a second.")),
        _ => None,
    }
}

pub async fn detail(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<Notice>,
) -> Result<Response, PageError> {
    let k = own_key(&state, &who, key_id(&id)?).await?;
    Ok(page(StatusCode::OK, render_detail(&state, &who, &k, detail_notice(&q.notice), None).await?))
}

async fn render_detail(
    state: &AppState,
    who: &SignedIn,
    k: &KeyRecord,
    top: Option<Markup>,
    limits_problem: Option<&str>,
) -> Result<Markup, PageError> {
    let csrf = who.csrf(state);
    let now = state.core.dashboard.now();
    let spend =
        state.core.dashboard.key_spend(who.user.user_id, std::slice::from_ref(k)).await.map_err(PageError::service)?;
    let spent = spend.get(&k.id).copied().unwrap_or_default();
    let text = |m: Option<MicroCredits>| m.map(|m| m.credits_text()).unwrap_or_default();
    let content = html! {
        div class="page-head" {
            p class="crumbs" { a href="/dashboard/keys" { "API keys" } " › " }
            h1 { (k.name) " " (env_badge(k.env)) " " (state_badge(k, now)) }
            p class="mono muted" { (label(k)) }
        }
        @if let Some(n) = top { (n) }
        div class="grid-2" {
            section class="panel" {
                h2 { "About this key" }
                table class="facts" {
                    tr { th { "Created" } td { (timestamp(k.created_at)) } }
                    tr { th { "Last used" } td { (k.last_used_at.map_or_else(|| "never".to_owned(), timestamp)) } }
                    tr { th { "Expires" } td { (k.expires_at.map_or_else(|| "never".to_owned(), timestamp)) } }
                    tr { th { "Spent, all time" } td class="num" { (credits(k.spent)) " credits" } }
                    @if let Some(limit) = k.spend_limit {
                        tr { th { (spent_label(k.limit_period)) } td class="num" { (credits(spent)) " of " (credits(limit)) " credits" } }
                        @if let Some(reset) = k.limit_period.next_reset(now) {
                            tr { th { "Next reset" } td data-test="next-reset" { (timestamp(reset)) } }
                        }
                    }
                    @if let Some(prev) = &k.previous {
                        @if prev.valid_until > now {
                            tr {
                                th { "Old secret" }
                                td {
                                    span class="mono" { (prev.display_prefix) "…" (prev.last4) } " works until " (timestamp(prev.valid_until))
                                    form method="post" action=(format!("/dashboard/keys/{}/retire-old-secret", k.id)) class="inline-form" {
                                        (layout::csrf_field(&csrf))
                                        button class="btn danger small" type="submit" { "Refuse the old secret now" }
                                    }
                                }
                            }
                        }
                    }
                }
                p { a href=(format!("/dashboard/usage?key={}", k.id)) { "See this key's usage →" } }
            }
            section class="panel" id="limits" {
                h2 { "Limits" }
                @if let Some(p) = limits_problem { (notice(Tone::Bad, p)) }
                form method="post" action=(format!("/dashboard/keys/{}/limits", k.id)) {
                    (layout::csrf_field(&csrf))
                    div class="field" {
                        label for="limit" { "Spend limit (credits)" }
                        div class="inline" {
                            input id="limit" name="spend_limit" type="text" inputmode="decimal" maxlength="20" placeholder="no limit" value=(text(k.spend_limit));
                            select name="period" aria-label="Limit period" {
                                @for p in [SpendPeriod::Day, SpendPeriod::Week, SpendPeriod::Month, SpendPeriod::Total] {
                                    @if p == k.limit_period { option value=(p.as_str()) selected { (p.label()) } } @else { option value=(p.as_str()) { (p.label()) } }
                                }
                            }
                        }
                        span class="hint" { "Past it, requests get 402 until the next reset (00:00 UTC; weeks on Monday; months on the 1st)." }
                    }
                    div class="field" {
                        label for="per-request" { "Most one request may cost (credits)" }
                        input id="per-request" name="per_request" type="text" inputmode="decimal" maxlength="20" placeholder="your plan's limit" value=(text(k.caps.per_request));
                    }
                    div class="field" {
                        label for="per-hour" { "Most this key may spend in any hour (credits)" }
                        input id="per-hour" name="per_hour" type="text" inputmode="decimal" maxlength="20" placeholder="your plan's limit" value=(text(k.caps.per_hour));
                    }
                    button class="btn" type="submit" { "Save limits" }
                }
            }
        }
        div class="grid-2" {
            section class="panel" id="rotate" {
                h2 { "Rotate" }
                p class="muted small" { "A new secret for this key: same name, limits and history. The old secret keeps working for the overlap you choose, so you can switch without downtime." }
                form method="post" action=(format!("/dashboard/keys/{}/rotate", k.id)) {
                    (layout::csrf_field(&csrf))
                    div class="field" {
                        label for="overlap" { "Keep the old secret working for" }
                        select id="overlap" name="overlap_secs" {
                            @for (secs, text) in OVERLAPS {
                                @if Duration::from_secs(secs) == DEFAULT_OVERLAP { option value=(secs) selected { (text) } } @else { option value=(secs) { (text) } }
                            }
                        }
                    }
                    button class="btn" type="submit" { "Rotate key" }
                }
            }
            section class="panel danger-zone" id="state" {
                h2 { "Turn off" }
                p class="muted small" { "Every node refuses the key within a second. A deactivated key can be turned back on; a deleted one cannot." }
                div class="row-actions" {
                    form method="post" action=(format!("/dashboard/keys/{}/state", k.id)) {
                        (layout::csrf_field(&csrf))
                        @if k.state == KeyState::Active {
                            input type="hidden" name="action" value="deactivate";
                            button class="btn secondary" type="submit" { "Deactivate key" }
                        } @else {
                            input type="hidden" name="action" value="reactivate";
                            button class="btn secondary" type="submit" { "Reactivate key" }
                        }
                    }
                    form method="post" action=(format!("/dashboard/keys/{}/state", k.id)) {
                        (layout::csrf_field(&csrf))
                        input type="hidden" name="action" value="delete";
                        button class="btn danger" type="submit" { "Delete key" }
                    }
                }
            }
        }
    };
    Ok(layout::app(&k.name, Section::Keys, &who.user.email, &csrf, content))
}

pub async fn set_limits(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<LimitsForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let k = own_key(&state, &who, key_id(&id)?).await?;
    let parsed = (|| {
        Ok::<_, &'static str>(KeyLimits {
            spend_limit: amount(&form.spend_limit)?,
            period: SpendPeriod::parse(&form.period).unwrap_or_default(),
            caps: CapOverrides { per_request: amount(&form.per_request)?, per_hour: amount(&form.per_hour)? },
        })
    })();
    let problem = match parsed {
        Ok(limits) => match state.core.keys.for_client(&who.client).set_limits(who.user.user_id, k.id, limits).await {
            Ok(_) => return Ok(Redirect::to(&format!("/dashboard/keys/{}?notice=limits", k.id)).into_response()),
            Err(layers_core::ServiceError::Invalid(p)) => p,
            Err(e) => return Err(PageError::service(e)),
        },
        Err(p) => p,
    };
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render_detail(&state, &who, &k, None, Some(problem)).await?))
}

pub async fn rotate(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<RotateForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let k = own_key(&state, &who, key_id(&id)?).await?;
    let secs: u64 = form.overlap_secs.trim().parse().map_err(|_| PageError::BadForm)?;
    if !OVERLAPS.iter().any(|(s, _)| *s == secs) {
        return Err(PageError::BadForm);
    }
    let created = state
        .core
        .keys
        .for_client(&who.client)
        .rotate(who.user.user_id, k.id, Duration::from_secs(secs))
        .await
        .map_err(PageError::service)?;
    let until = created.record.previous.as_ref().map(|p| p.valid_until);
    Ok(page(StatusCode::OK, render_secret(&state, &who, &created, until)))
}

pub async fn retire_old_secret(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<super::auth::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let k = own_key(&state, &who, key_id(&id)?).await?;
    state
        .core
        .keys
        .for_client(&who.client)
        .retire_previous(who.user.user_id, k.id)
        .await
        .map_err(PageError::service)?;
    Ok(Redirect::to(&format!("/dashboard/keys/{}?notice=retired", k.id)).into_response())
}

pub async fn set_state(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<StateForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let k = own_key(&state, &who, key_id(&id)?).await?;
    let (to, done) = match form.action.as_str() {
        "deactivate" => (KeyState::Deactivated, "deactivated"),
        "reactivate" => (KeyState::Active, "reactivated"),
        "delete" => (KeyState::Deleted, "deleted"),
        _ => return Err(PageError::BadForm),
    };
    state.core.keys.for_client(&who.client).set_state(who.user.user_id, k.id, to).await.map_err(PageError::service)?;
    Ok(Redirect::to(&format!("/dashboard/keys?notice={done}")).into_response())
}

pub async fn save_alerts(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<AlertsForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let parsed = (|| {
        Ok::<_, &'static str>(AlertChange {
            low_balance: amount(&form.low_balance)?,
            key_thresholds: alert_rules::parse_thresholds(&form.key_thresholds)?,
            webhook_url: Some(form.webhook_url.trim().to_owned()).filter(|u| !u.is_empty()),
            new_secret: form.new_secret == "1",
        })
    })();
    let problem = match parsed {
        Ok(change) => match state.core.alerts.change(who.user.user_id, change).await {
            Ok(_) => return Ok(Redirect::to("/dashboard/keys?notice=alerts#alerts").into_response()),
            Err(layers_core::ServiceError::Invalid(p)) => p,
            Err(e) => return Err(PageError::service(e)),
        },
        Err(p) => p,
    };
    let mut v = list_view(&state, &who).await?;
    v.alerts_problem = Some(problem);
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render_list(&state, &who, &v)))
}
