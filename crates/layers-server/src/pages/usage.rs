//! `/dashboard/usage`: every request, filtered by key, model, provider, status and dates; a
//! chart and breakdowns that follow the filters; each request's detail (its hold, charge and
//! release); the CSV export of exactly the filtered rows; pages that never skip a row.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{header, StatusCode};
use layers_core::dashboard::UsagePage;
use layers_core::records::{KeyRecord, StatusClass, UsageCursor, UsageFilter, UsageRecord, UsageSummary, UsageTotals};
use layers_domain::{KeyId, MicroCredits};
use maud::{html, Markup};
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::format::{count, credits, credits_short, iso_date, timestamp, when};
use super::layout::{self, notice, Section, Tone};
use super::session::SignedIn;
use super::{chart, page, query_escape, PageError};
use crate::state::AppState;

/// The years a filter or a cursor may name (every database stores them, and a day after the
/// last is still a date).
const FIRST_YEAR: i32 = 2000;
const LAST_YEAR: i32 = 9998;

/// The filter as the query string carries it (every field optional, empty is "all").
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UsageQuery {
    #[serde(default)]
    key: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    status: String,
    /// First day, `yyyy-mm-dd` (UTC), inclusive.
    #[serde(default)]
    from: String,
    /// Last day, `yyyy-mm-dd` (UTC), inclusive.
    #[serde(default)]
    to: String,
    /// Where the page starts: `<unix nanos>.<row id>` of the last row of the previous page.
    #[serde(default)]
    before: String,
}

impl UsageQuery {
    /// The store's filter, or what is wrong with the query.
    fn filter(&self) -> Result<UsageFilter, &'static str> {
        let day = |s: &str| -> Result<Option<OffsetDateTime>, &'static str> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let date = Date::parse(s.trim(), &format).map_err(|_| "Dates are written 2026-12-01.")?;
            if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
                return Err("Dates are from the year 2000 to 9998.");
            }
            Ok(Some(date.midnight().assume_utc()))
        };
        let from = day(&self.from)?;
        let until = day(&self.to)?.map(|d| d + time::Duration::days(1));
        if let (Some(f), Some(u)) = (from, until) {
            if f >= u {
                return Err("The first day must not be after the last.");
            }
        }
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty() && s.len() <= 200);
        Ok(UsageFilter {
            key: match self.key.trim() {
                "" => None,
                k => Some(k.parse::<KeyId>().map_err(|_| "That key is not one of yours.")?),
            },
            model: text(&self.model),
            provider: text(&self.provider),
            status: match self.status.as_str() {
                "ok" => Some(StatusClass::Ok),
                "failed" => Some(StatusClass::Failed),
                _ => None,
            },
            from,
            until,
        })
    }

    /// Where the page starts; a cursor that does not parse, or names a time out of range, is
    /// the first page.
    fn cursor(&self) -> Option<UsageCursor> {
        let (nanos, id) = self.before.split_once('.')?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
        (FIRST_YEAR..=LAST_YEAR).contains(&at.year()).then_some(())?;
        Some(UsageCursor { created_at: at, id: Uuid::parse_str(id).ok()? })
    }

    /// The query string of the filter (no cursor), for links.
    fn filter_query(&self) -> String {
        [
            ("key", &self.key),
            ("model", &self.model),
            ("provider", &self.provider),
            ("status", &self.status),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

fn cursor_text(c: &UsageCursor) -> String {
    format!("{}.{}", c.created_at.unix_timestamp_nanos(), c.id)
}

fn released(r: &UsageRecord) -> MicroCredits {
    r.held.saturating_sub(r.charged).max(MicroCredits::ZERO)
}

fn status_badge(status: u16) -> Markup {
    html! {
        @if (200..300).contains(&status) { span class="badge ok" { (status) } }
        @else { span class="badge warn" { (status) } }
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<UsageQuery>,
) -> Result<Response, PageError> {
    let user = who.user.user_id;
    let keys = state.core.keys.list(user).await.map_err(PageError::service)?;
    let dashboard = &state.core.dashboard;
    let (filter, cursor, problem) = match q.filter() {
        Ok(filter) => (filter, q.cursor(), None),
        Err(p) => (UsageFilter::default(), None, Some(p)),
    };
    let view = dashboard.usage(user, &filter, cursor).await.map_err(PageError::service)?;
    // The filters offer every model and provider the account used: the unfiltered summary,
    // which is the view's own when nothing is filtered.
    let choices = if filter == UsageFilter::default() {
        view.summary.clone()
    } else {
        dashboard.usage_summary(user, &UsageFilter::default()).await.map_err(PageError::service)?
    };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let csrf = who.csrf(&state);
    let content = render(&q, &view, &choices, &keys, problem);
    Ok(page(status, layout::app("Usage", Section::Usage, &who.user.email, &csrf, content)))
}

fn options(current: &str, values: impl Iterator<Item = (String, String)>) -> Markup {
    html! {
        @for (value, text) in values {
            @if value == current { option value=(value) selected { (text) } } @else { option value=(value) { (text) } }
        }
    }
}

fn render(q: &UsageQuery, v: &UsagePage, choices: &UsageSummary, keys: &[KeyRecord], problem: Option<&str>) -> Markup {
    let names: HashMap<KeyId, &KeyRecord> = keys.iter().map(|k| (k.id, k)).collect();
    let key_name =
        |id: Option<KeyId>| id.and_then(|id| names.get(&id)).map_or("(deleted key)".to_owned(), |k| k.name.clone());
    let fq = q.filter_query();
    let export = if fq.is_empty() { "/dashboard/usage.csv".to_owned() } else { format!("/dashboard/usage.csv?{fq}") };
    let s = &v.summary;
    let filtered = !fq.is_empty();
    html! {
        div class="page-head row" {
            div {
                h1 { "Usage" }
                p class="muted" { "Every request your keys made, with what it held, was charged and released. Times are UTC." }
            }
            a class="btn secondary" href=(export) download="layers-usage.csv" { "Export CSV" }
        }
        @if let Some(p) = problem { (notice(Tone::Bad, p)) }
        form class="filters panel" method="get" action="/dashboard/usage" {
            div class="field" {
                label for="f-key" { "Key" }
                select id="f-key" name="key" {
                    option value="" { "All keys" }
                    (options(&q.key, keys.iter().map(|k| (k.id.to_string(), format!("{} ({}…{})", k.name, k.display_prefix, k.last4)))))
                }
            }
            div class="field" {
                label for="f-model" { "Model" }
                select id="f-model" name="model" {
                    option value="" { "All models" }
                    (options(&q.model, choices.by_model.iter().map(|(m, _)| (m.clone(), m.clone()))))
                }
            }
            div class="field" {
                label for="f-provider" { "Provider" }
                select id="f-provider" name="provider" {
                    option value="" { "All providers" }
                    (options(&q.provider, choices.by_provider.iter().map(|(p, _)| (p.clone(), p.clone()))))
                }
            }
            div class="field" {
                label for="f-status" { "Status" }
                select id="f-status" name="status" {
                    (options(&q.status, [("", "Any"), ("ok", "Succeeded"), ("failed", "Failed")].into_iter().map(|(a, b)| (a.to_owned(), b.to_owned()))))
                }
            }
            div class="field" {
                label for="f-from" { "From (UTC)" }
                input id="f-from" name="from" type="date" value=(q.from);
            }
            div class="field" {
                label for="f-to" { "To (UTC)" }
                input id="f-to" name="to" type="date" value=(q.to);
            }
            div class="filter-actions" {
                button class="btn" type="submit" { "Apply filters" }
                @if filtered { a class="btn secondary" href="/dashboard/usage" { "Clear" } }
            }
        }
        div class="stats" {
            div class="stat" { span class="stat-label" { "Requests" } span class="stat-value" data-test="total-requests" { (count(s.total.requests)) } }
            div class="stat" { span class="stat-label" { "Tokens in" } span class="stat-value" { (count(s.total.prompt_tokens)) } }
            div class="stat" { span class="stat-label" { "Tokens out" } span class="stat-value" { (count(s.total.completion_tokens)) } }
            div class="stat" {
                span class="stat-label" { "Spend (credits)" }
                span class="stat-value" title=(credits(s.total.charged)) { (credits_short(s.total.charged)) }
                span class="stat-sub" data-test="total-spend" { (credits(s.total.charged)) " exactly" }
            }
        }
        section class="panel" {
            h2 { "Per day" }
            (chart::daily(&v.days, "Spend and requests per day for the selected requests"))
            (chart::daily_table(&v.days))
        }
        div class="grid-2" {
            (breakdown("By model", s.by_model.iter().map(|(m, t)| (m.clone(), t)), &s.total))
            (breakdown("By key", s.by_key.iter().map(|(k, t)| (key_name(*k), t)), &s.total))
        }
        section class="panel" id="requests" {
            div class="panel-head" {
                h2 { "Requests" }
                span class="muted small" { (count(s.total.requests)) (if filtered { " match the filters" } else { " in all" }) }
            }
            @if v.rows.is_empty() {
                p class="muted" { "No requests match." }
            } @else {
                div class="table-wrap" {
                    table class="requests" {
                        thead { tr {
                            th { "Time (UTC)" } th { "Request" } th class="optional" { "Key" } th { "Model" }
                            th { "Status" } th class="num optional" { "Tokens in / out" }
                            th class="num optional" { "Held" } th class="num" { "Charged" }
                        } }
                        tbody {
                            @for r in &v.rows {
                                tr data-request-id=(r.request_id) {
                                    td class="when" { (when(r.created_at)) }
                                    td class="mono small" { a href=(format!("/dashboard/usage/{}", r.id)) { (short(&r.request_id)) } }
                                    td class="optional" { (key_name(r.key_id)) }
                                    td {
                                        (r.model)
                                        @if let Some(app) = &r.app_title {
                                            br; span class="muted small" data-test="app" { (app) }
                                        }
                                    }
                                    td { (status_badge(r.status)) }
                                    td class="num optional" { (count(i64::from(r.usage.prompt_tokens))) " / " (count(i64::from(r.usage.completion_tokens))) }
                                    td class="num optional" { (credits(r.held)) }
                                    td class="num" data-test="charged" { (credits(r.charged)) }
                                }
                            }
                        }
                    }
                }
                div class="pager" {
                    @if !q.before.is_empty() {
                        a class="btn secondary small" href=(if fq.is_empty() { "/dashboard/usage".to_owned() } else { format!("/dashboard/usage?{fq}") }) { "← Newest" }
                    }
                    @if let Some(next) = &v.next {
                        a class="btn secondary small" rel="next" href=(format!("/dashboard/usage?{}{}before={}", fq, if fq.is_empty() { "" } else { "&" }, cursor_text(next))) { "Older →" }
                    }
                }
            }
        }
    }
}

/// The request id as the table shows it (the full id is on its detail page).
fn short(id: &str) -> String {
    if id.chars().count() > 13 {
        format!("{}…", id.chars().take(12).collect::<String>())
    } else {
        id.to_owned()
    }
}

fn breakdown<'a>(title: &str, groups: impl Iterator<Item = (String, &'a UsageTotals)>, total: &UsageTotals) -> Markup {
    let groups: Vec<(String, &UsageTotals)> = groups.collect();
    html! {
        section class="panel" {
            h2 { (title) }
            @if groups.is_empty() {
                p class="muted" { "Nothing yet." }
            } @else {
                table class="breakdown" {
                    thead { tr { th { "" } th class="num" { "Requests" } th class="num" { "Credits" } } }
                    tbody {
                        @for (name, t) in &groups {
                            tr {
                                td { (name) (chart::share(t.charged.0, total.charged.0)) }
                                td class="num" { (count(t.requests)) }
                                td class="num" { (credits(t.charged)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn detail(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound)?;
    let row = state
        .core
        .dashboard
        .usage_row(who.user.user_id, id)
        .await
        .map_err(PageError::service)?
        .ok_or(PageError::NotFound)?;
    let keys = state.core.keys.list(who.user.user_id).await.map_err(PageError::service)?;
    let key = row.key_id.and_then(|k| keys.iter().find(|r| r.id == k));
    let csrf = who.csrf(&state);
    let r = &row;
    let content = html! {
        div class="page-head" {
            p class="crumbs" { a href="/dashboard/usage" { "Usage" } " › " }
            h1 class="wrap" { "Request " span class="mono" { (r.request_id) } }
            p class="muted" { (timestamp(r.created_at)) }
        }
        div class="grid-2" {
            section class="panel" {
                h2 { "Request" }
                table class="facts" {
                    tr { th { "Request id" } td class="mono wrap" data-test="request-id" { (r.request_id) } }
                    tr { th { "Time" } td { (timestamp(r.created_at)) } }
                    tr { th { "Key" } td { @match key { Some(k) => a href=(format!("/dashboard/keys/{}", k.id)) { (k.name) }, None => "(deleted key)" } } }
                    tr { th { "Model" } td { (r.model) } }
                    tr { th { "Provider" } td { (r.provider) " · " span class="mono small" { (r.upstream_model) } } }
                    tr { th { "Endpoint" } td { (r.endpoint) (if r.streamed { " · streamed" } else { "" }) } }
                    @if r.app_title.is_some() || r.app_origin.is_some() {
                        tr {
                            th { "App" }
                            td data-test="app" {
                                (r.app_title.as_deref().unwrap_or("(untitled)"))
                                @if let Some(origin) = &r.app_origin { " · " span class="mono small" { (origin) } }
                            }
                        }
                    }
                    tr { th { "Status" } td { (status_badge(r.status)) @if let Some(code) = &r.error_code { " " span class="mono small" { (code) } } } }
                    tr { th { "Latency" } td { (count(r.latency_ms)) " ms" } }
                }
            }
            section class="panel" {
                h2 { "Tokens and money" }
                table class="facts" {
                    tr { th { "Tokens in" } td class="num" { (count(i64::from(r.usage.prompt_tokens))) } }
                    tr { th { "of which cached" } td class="num" { (count(i64::from(r.usage.cached_tokens))) } }
                    tr { th { "Tokens out" } td class="num" { (count(i64::from(r.usage.completion_tokens))) } }
                    tr { th { "of which reasoning" } td class="num" { (count(i64::from(r.usage.reasoning_tokens))) } }
                    tr { th { "Held before the call" } td class="num" data-test="held" { (credits(r.held)) " credits" } }
                    tr { th { "Charged" } td class="num" data-test="charged" { (credits(r.charged)) " credits" } }
                    tr { th { "Released" } td class="num" data-test="released" { (credits(released(r))) " credits" } }
                    @if r.shortfall.is_positive() {
                        tr { th { "Not charged (over a cap)" } td class="num" { (credits(r.shortfall)) " credits" } }
                    }
                    @if r.usage_estimated {
                        tr { th { "Note" } td { "The provider sent no usage; tokens are our upper-bound estimate." } }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout::app("Request", Section::Usage, &who.user.email, &csrf, content)))
}

pub async fn csv(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<UsageQuery>,
) -> Result<Response, PageError> {
    let filter = q.filter().map_err(PageError::Invalid)?;
    let chunks = state.core.dashboard.usage_csv(who.user.user_id, &filter).await.map_err(PageError::service)?;
    let name = format!("layers-usage-{}.csv", iso_date(state.core.dashboard.now()));
    // A page that fails mid-export ends the download short (the client sees a broken transfer,
    // never a CSV that silently lacks rows).
    let body = axum::body::Body::from_stream(chunks.map(|chunk| chunk.map(axum::body::Bytes::from)));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}
