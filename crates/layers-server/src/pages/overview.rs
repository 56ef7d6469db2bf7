//! `/dashboard`: the overview. Balance (and that it is the sum of the ledger), what is held for
//! requests in flight, spend today and this month, the plan's limits, 30 days of spend and
//! requests, and how long the balance lasts at the recent rate.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use layers_core::dashboard::Overview;
use layers_domain::dashboard::runway::{Runway, WINDOW_DAYS};
use layers_domain::MicroCredits;
use maud::{html, Markup};

use super::format::{count, credits, credits_short, usd_approx};
use super::layout::{self, Section};
use super::session::SignedIn;
use super::{chart, page, PageError};
use crate::state::AppState;

pub async fn show(State(state): State<AppState>, who: SignedIn) -> Result<Response, PageError> {
    let o = state.core.dashboard.overview(who.user.user_id).await.map_err(PageError::service)?;
    let csrf = who.csrf(&state);
    Ok(page(StatusCode::OK, layout::app("Overview", Section::Overview, &who.user.email, &csrf, render(&o))))
}

fn runway_text(o: &Overview) -> Markup {
    let per_day = MicroCredits(o.spent_last_7_days.0 / WINDOW_DAYS);
    match o.runway {
        Runway::Empty => html! {
            p class="runway bad" { "Your balance is spent: requests with live keys are refused until you add credits." }
        },
        Runway::Idle => html! {
            p class="runway" { "Nothing was spent in the last 7 days, so there is no forecast yet." }
        },
        Runway::Days(days) => html! {
            p class=(if days < 7 { "runway warn" } else { "runway" }) {
                "At the last 7 days' rate (about " strong { (credits_short(per_day)) } " credits a day), your balance lasts about "
                strong { (count(days)) (if days == 1 { " day" } else { " days" }) } "."
            }
        },
    }
}

fn render(o: &Overview) -> Markup {
    let balanced = o.balance == o.ledger_sum;
    html! {
        div class="page-head row" {
            div {
                h1 { "Overview" }
                p class="muted" { "Your balance, your spend and your limits. Times and days are UTC." }
            }
            a class="btn" href="/dashboard/billing#buy" { "Buy credits" }
        }
        div class="stats" {
            div class="stat" {
                span class="stat-label" { "Balance" }
                span class="stat-value" title=(credits(o.balance)) { (credits_short(o.balance)) }
                span class="stat-sub" data-test="balance" { (credits(o.balance)) " credits exactly" }
                span class="stat-sub" { (usd_approx(o.balance)) }
                @if balanced {
                    span class="stat-sub ok" data-test="ledger-check" { "✓ equals the sum of your ledger" }
                } @else {
                    span class="stat-sub bad" data-test="ledger-check" { "Ledger sum " (credits(o.ledger_sum)) }
                }
            }
            div class="stat" {
                span class="stat-label" { "Held by the gateway" }
                span class="stat-value" data-test="held" title=(credits(o.held)) { (credits_short(o.held)) }
                span class="stat-sub" { "Available: " (credits_short(o.balance.saturating_sub(o.held))) }
                span class="stat-sub" { "For requests in flight and the next few; back to your balance when idle" }
            }
            div class="stat" {
                span class="stat-label" { "Spend today" }
                span class="stat-value" title=(credits(o.today.charged)) { (credits_short(o.today.charged)) }
                span class="stat-sub" data-test="spend-today" { (credits(o.today.charged)) " credits" }
                span class="stat-sub" { (count(o.today.requests)) " requests" }
            }
            div class="stat" {
                span class="stat-label" { "Spend this month" }
                span class="stat-value" title=(credits(o.this_month.charged)) { (credits_short(o.this_month.charged)) }
                span class="stat-sub" data-test="spend-month" { (credits(o.this_month.charged)) " credits" }
                span class="stat-sub" { (count(o.this_month.requests)) " requests" }
            }
        }
        div class="grid-2" {
            section class="panel" {
                h2 { "Runway" }
                (runway_text(o))
                p class="muted small" { "A forecast from the last 7 days' spend; your actual use decides." }
                a class="btn secondary small" href="/dashboard/billing#buy" { "Buy credits" }
            }
            section class="panel" {
                div class="panel-head" {
                    h2 { "Plan and limits" }
                    span class="badge brand" { (o.tier.label()) }
                }
                table class="facts" {
                    tr { th { "Requests per minute, per key" } td class="num" { (count(i64::from(o.requests_per_minute))) } }
                    tr { th { "Most one request may cost" } td class="num" { (cap(o.per_request_cap)) } }
                    tr { th { "Most your account may spend in an hour" } td class="num" { (cap(o.per_hour_cap)) } }
                    tr { th { "Live keys" } td class="num" { a href="/dashboard/keys" { (o.live_keys) } } }
                }
            }
        }
        section class="panel" {
            div class="panel-head" {
                div {
                    h2 { "Last 30 days" }
                    p class="muted small" { "Spend and requests per day (UTC)." }
                }
                a class="btn secondary small" href="/dashboard/usage" { "See all usage" }
            }
            (chart::daily(&o.days, "Spend and requests per day, last 30 days"))
            (chart::daily_table(&o.days))
        }
    }
}

fn cap(c: Option<MicroCredits>) -> String {
    c.map_or_else(|| "no limit".to_owned(), |c| format!("{} credits", credits(c)))
}
