//! `/dashboard/billing`: the balance, the plan, and the statement: every grant, purchase,
//! refund and adjustment, and each day's usage debits summed, with the balance after each line.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use layers_core::records::TransactionKind;
use maud::{html, Markup};

use super::format::{count, credits, credits_short, date, tier_name, timestamp, usd_approx, when};
use super::layout::{self, Section};
use super::session::SignedIn;
use super::{page, PageError};
use crate::state::AppState;

/// Statement lines shown.
const LINES: u32 = 200;

fn kind_label(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::Grant => "Credit grant",
        TransactionKind::Purchase => "Purchase",
        TransactionKind::SubscriptionGrant => "Plan credits",
        TransactionKind::Usage => "Usage",
        TransactionKind::Refund => "Refund",
        TransactionKind::Adjustment => "Adjustment",
    }
}

pub async fn show(State(state): State<AppState>, who: SignedIn) -> Result<Response, PageError> {
    let user = who.user.user_id;
    let overview = state.core.dashboard.overview(user).await.map_err(PageError::service)?;
    let lines = state.core.dashboard.statement(user, LINES).await.map_err(PageError::service)?;
    let csrf = who.csrf(&state);
    let content: Markup = html! {
        div class="page-head" {
            h1 { "Billing" }
            p class="muted" { "Your balance, your plan and every movement of your credits. 1 credit = US$0.01. Times are UTC." }
        }
        div class="stats" {
            div class="stat" {
                span class="stat-label" { "Balance" }
                span class="stat-value" title=(credits(overview.balance)) { (credits_short(overview.balance)) }
                span class="stat-sub" data-test="balance" { (credits(overview.balance)) }
                span class="stat-sub" { (usd_approx(overview.balance)) }
            }
            div class="stat" {
                span class="stat-label" { "Plan" }
                span class="stat-value" { (tier_name(overview.tier)) }
                span class="stat-sub" { (count(i64::from(overview.requests_per_minute))) " requests per minute per key" }
            }
            div class="stat" {
                span class="stat-label" { "Spend this month" }
                span class="stat-value" title=(credits(overview.this_month.charged)) { (credits_short(overview.this_month.charged)) }
                span class="stat-sub" { (count(overview.this_month.requests)) " requests" }
            }
        }
        section class="panel" id="buy" {
            h2 { "Add credits" }
            p { "Card payments are not enabled on this deployment yet. Until they are, your operator adds credits to your account (" code { "layers admin credits grant" } "); they appear below as soon as they land." }
        }
        section class="panel" id="statement" {
            div class="panel-head" {
                div {
                    h2 { "Statement" }
                    p class="muted small" { "Newest first. Usage is summed per day (UTC) and shown at the day's last request; the balance column is what your balance was after each line." }
                }
            }
            @if lines.is_empty() {
                p class="muted" { "No transactions yet." }
            } @else {
                div class="table-wrap" {
                    table class="statement" {
                        thead { tr { th { "Date" } th { "What" } th class="num" { "Amount" } th class="num" { "Balance" } } }
                        tbody {
                            @for e in &lines {
                                tr data-kind=(e.kind.as_str()) {
                                    td class="when" title=(timestamp(e.at)) {
                                        (if e.kind == TransactionKind::Usage { date(e.at) } else { when(e.at) })
                                    }
                                    td {
                                        (kind_label(e.kind))
                                        @if e.kind == TransactionKind::Usage {
                                            span class="muted small" { " · " (count(e.count)) (if e.count == 1 { " request" } else { " requests" }) }
                                        }
                                        @if let Some(reason) = &e.reason { span class="muted small block" { (reason) } }
                                    }
                                    td class=(if e.amount.0 < 0 { "num neg" } else { "num pos" }) {
                                        (if e.amount.0 > 0 { "+" } else { "" }) (credits(e.amount))
                                    }
                                    td class="num" data-test="balance-after" { (credits(e.balance_after)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, layout::app("Billing", Section::Billing, &who.user.email, &csrf, content)))
}
