//! `/dashboard/billing`: the balance and plan; buying credits (packs or an amount) and plans
//! through Stripe Checkout, the portal, auto top-up; invoices and receipts; and the statement
//! (every grant, purchase, refund and adjustment, each day's usage summed, the balance after
//! each line). Credits are granted only by Stripe's webhook: the success page says so and
//! reloads itself (a meta refresh, no script) until they land.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use layers_core::identity::IdentityError;
use layers_core::payments::{BillingView, PaymentError, PaymentService};
use layers_core::records::TransactionKind;
use layers_domain::payments::{parse_dollars, plans::status_grants_plan, MICROS_PER_CENT};
use layers_domain::Tier;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

use super::format::{count, credits, credits_short, date, timestamp, usd_approx, when};
use super::layout::{self, notice, Section, Tone};
use super::session::SignedIn;
use super::{page, PageError, PageForm};
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

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    notice: String,
}

fn billing_notice(code: &str) -> Option<Markup> {
    let (tone, text) = match code {
        "cancelled" => (Tone::Ok, "Checkout was cancelled: nothing was charged."),
        "auto-topup" => (Tone::Ok, "Auto top-up is saved."),
        "reauth" => (Tone::Bad, "For this, log out and log in again first."),
        "password" => (Tone::Bad, "That password is not right: nothing was bought."),
        "throttled" => (Tone::Bad, "Too many password attempts: wait a few minutes."),
        "stripe" => (Tone::Bad, "Stripe could not be reached: nothing was charged. Try again in a moment."),
        _ => return None,
    };
    Some(notice(tone, text))
}

/// Dollars, from whole credits (cents).
fn dollars(credits: i64) -> String {
    let whole = layers_domain::money::group_thousands(&(credits / 100).to_string());
    match credits % 100 {
        0 => format!("${whole}"),
        c => format!("${whole}.{c:02}"),
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<Notice>,
) -> Result<Response, PageError> {
    let content = render(&state, &who, billing_notice(&q.notice)).await?;
    Ok(page(StatusCode::OK, content))
}

async fn render(state: &AppState, who: &SignedIn, top: Option<Markup>) -> Result<Markup, PageError> {
    let user = who.user.user_id;
    let overview = state.core.dashboard.overview(user).await.map_err(PageError::service)?;
    let lines = state.core.dashboard.statement(user, LINES).await.map_err(PageError::service)?;
    let payments = state.core.payments.as_deref();
    let view = match payments {
        Some(p) => Some(p.billing_view(user).await.map_err(payment_error)?),
        None => None,
    };
    let csrf = who.csrf(state);
    let reauth = state.core.identity.needs_reauth(&who.user);
    let negative = overview.balance.0 < 0;
    let content: Markup = html! {
        div class="page-head" {
            h1 { "Billing" }
            p class="muted" { "Your balance, your plan and every movement of your credits. 1 credit = US$0.01. Times are UTC." }
        }
        @if let Some(n) = top { (n) }
        @if negative {
            (notice(Tone::Bad, "Your balance is below zero after a refund or a dispute. Requests with your live keys are refused until you add credits; test keys keep working."))
        }
        div class="stats" {
            div class="stat" {
                span class="stat-label" { "Balance" }
                span class=(if negative { "stat-value neg" } else { "stat-value" }) title=(credits(overview.balance)) { (credits_short(overview.balance)) }
                span class="stat-sub" data-test="balance" { (credits(overview.balance)) }
                span class="stat-sub" { (usd_approx(overview.balance)) }
            }
            div class="stat" {
                span class="stat-label" { "Plan" }
                span class="stat-value" data-test="plan" { (overview.tier.label()) }
                span class="stat-sub" { (count(i64::from(overview.requests_per_minute))) " requests per minute per key" }
            }
            div class="stat" {
                span class="stat-label" { "Spend this month" }
                span class="stat-value" title=(credits(overview.this_month.charged)) { (credits_short(overview.this_month.charged)) }
                span class="stat-sub" { (count(overview.this_month.requests)) " requests" }
            }
        }
        @match (payments, &view) {
            (Some(p), Some(v)) => {
                (buy_panel(p, &csrf, reauth))
                (plan_panel(state, p, v, overview.tier, &csrf, reauth))
                @if p.settings().auto_topup { (auto_topup_panel(p, v, &csrf, reauth)) }
                (invoices_panel(v))
            }
            _ => {
                section class="panel" id="buy" {
                    h2 { "Add credits" }
                    p { "Card payments are not enabled on this deployment. Your operator adds credits to your account (" code { "layers admin credits grant" } "); they appear below as soon as they land." }
                }
            }
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
    Ok(layout::app("Billing", Section::Billing, &who.user.email, &csrf, content))
}

/// The password field a sensitive form asks for when the login is older than 15 minutes.
fn password_field(reauth: bool, id: &str) -> Markup {
    html! {
        @if reauth {
            div class="field" {
                label for=(id) { "Your password" }
                input id=(id) name="password" type="password" autocomplete="current-password" required;
                span class="hint" { "You logged in a while ago: confirm it is you." }
            }
        }
    }
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn buy_panel(p: &PaymentService, csrf: &str, reauth: bool) -> Markup {
    let s = p.settings();
    let bonus = s.bonus_percent;
    html! {
        section class="panel" id="buy" {
            h2 { "Add credits" }
            p class="muted small" {
                "Paid by card through Stripe Checkout. Credits are added the moment Stripe confirms the payment, usually within seconds."
                @if bonus > 0 { " Every purchase includes " (bonus) "% extra credits." }
            }
            div class="packs" {
                @for pack in &s.packs {
                    form class="pack" method="post" action="/dashboard/billing/buy" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="nonce" value=(nonce());
                        input type="hidden" name="credits" value=(pack);
                        span class="pack-price" { (dollars(*pack)) }
                        span class="pack-credits" { (layers_domain::money::group_thousands(&pack.to_string())) " credits" }
                        (password_field(reauth, &format!("password-{pack}")))
                        button class="btn" type="submit" data-test=(format!("buy-{pack}")) { "Buy" }
                    }
                }
            }
            form class="form inline-form" method="post" action="/dashboard/billing/buy" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="nonce" value=(nonce());
                div class="field" {
                    label for="amount" { "Another amount (US$)" }
                    input id="amount" name="amount" type="text" inputmode="decimal" placeholder="25.00" required;
                    span class="hint" { "From " (dollars(s.custom.min_credits)) " to " (dollars(s.custom.max_credits)) "." }
                }
                (password_field(reauth, "password-custom"))
                div class="form-actions" { button class="btn secondary" type="submit" { "Buy" } }
            }
        }
    }
}

fn plan_panel(state: &AppState, p: &PaymentService, v: &BillingView, tier: Tier, csrf: &str, reauth: bool) -> Markup {
    let live = v.account.subscription_status.as_deref().is_some_and(status_grants_plan);
    html! {
        section class="panel" id="plan" {
            div class="panel-head" {
                div {
                    h2 { "Plan" }
                    p class="muted small" {
                        "Your plan sets your rate limits; it applies to every key, on every node, the moment Stripe confirms the change."
                    }
                }
                @if v.account.customer.is_some() {
                    form method="post" action="/dashboard/billing/portal" {
                        input type="hidden" name="csrf" value=(csrf);
                        (password_field(reauth, "password-portal"))
                        button class="btn secondary" type="submit" { "Manage billing" }
                    }
                }
            }
            @if let (Some(status), true) = (&v.account.subscription_status, v.account.subscription_id.is_some()) {
                p data-test="subscription" {
                    "Subscription: " strong { (status.replace('_', " ")) }
                    @if let Some(end) = v.account.period_end { span class="muted" { " · current period ends " (date(end)) } }
                    @if status == "past_due" { span class="neg" { " · Stripe could not charge your card; update it in Manage billing." } }
                }
            }
            div class="plans" {
                div class=(if tier == Tier::Free { "plan current" } else { "plan" }) {
                    h3 { "Free" }
                    p class="plan-rate" { (count(i64::from(state.core.dashboard.tier_rate(Tier::Free)))) " requests/min per key" }
                    p class="muted small" { "Pay as you go with credits." }
                    @if tier == Tier::Free { span class="tag" { "Current" } }
                }
                @for plan in &p.settings().plans {
                    div class=(if tier == plan.tier { "plan current" } else { "plan" }) {
                        h3 { (plan.tier.label()) }
                        p class="plan-rate" { (count(i64::from(state.core.dashboard.tier_rate(plan.tier)))) " requests/min per key" }
                        @if plan.monthly_credits > 0 {
                            p class="muted small" { (layers_domain::money::group_thousands(&plan.monthly_credits.to_string())) " credits included each month" }
                        }
                        @if tier == plan.tier {
                            span class="tag" { "Current" }
                        } @else if live {
                            form method="post" action="/dashboard/billing/portal" {
                                input type="hidden" name="csrf" value=(csrf);
                                (password_field(reauth, &format!("password-portal-{}", plan.tier)))
                                button class="btn secondary" type="submit" { "Change in portal" }
                            }
                        } @else {
                            form method="post" action="/dashboard/billing/plan" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="nonce" value=(nonce());
                                input type="hidden" name="tier" value=(plan.tier.as_str());
                                (password_field(reauth, &format!("password-plan-{}", plan.tier)))
                                button class="btn" type="submit" data-test=(format!("plan-{}", plan.tier)) { "Choose " (plan.tier.label()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn auto_topup_panel(p: &PaymentService, v: &BillingView, csrf: &str, reauth: bool) -> Markup {
    let rule = v.auto_topup.as_ref();
    let enabled = rule.is_some_and(|r| r.enabled);
    let threshold = rule.map(|r| r.threshold.0 / MICROS_PER_CENT).unwrap_or(500);
    let amount = rule.map(|r| r.amount_credits).unwrap_or(p.settings().custom.min_credits.max(2_000));
    let failures = rule.map(|r| r.failures).unwrap_or(0);
    html! {
        section class="panel" id="auto-topup" {
            h2 { "Auto top-up" }
            p class="muted small" {
                "When your balance falls below a threshold, Layers buys credits with the card you paid with last (saved by Stripe at checkout), once per drop. After "
                (layers_domain::payments::autotopup::MAX_FAILURES) " failed payments in a row it turns itself off and e-mails you."
            }
            @if rule.is_some_and(|r| !r.enabled && r.failures >= layers_domain::payments::autotopup::MAX_FAILURES) {
                (notice(Tone::Bad, "Auto top-up turned itself off after repeated declined payments. Update your card in Manage billing, then turn it on again."))
            } @else if failures > 0 {
                (notice(Tone::Bad, "The last auto top-up payment failed; it will be tried again."))
            }
            form class="form" method="post" action="/dashboard/billing/auto-topup" {
                input type="hidden" name="csrf" value=(csrf);
                label class="choice" {
                    input type="checkbox" name="enabled" value="1" checked[enabled];
                    " Buy credits automatically"
                }
                div class="field-row" {
                    div class="field" {
                        label for="threshold" { "When my balance is below (credits)" }
                        input id="threshold" name="threshold" type="number" min="1" step="1" value=(threshold) required;
                    }
                    div class="field" {
                        label for="topup-amount" { "Buy (credits)" }
                        input id="topup-amount" name="amount" type="number" min=(p.settings().custom.min_credits) max=(p.settings().custom.max_credits) step="1" value=(amount) required;
                    }
                }
                (password_field(reauth, "password-auto-topup"))
                div class="form-actions" { button class="btn secondary" type="submit" { "Save auto top-up" } }
            }
        }
    }
}

fn invoices_panel(v: &BillingView) -> Markup {
    html! {
        section class="panel" id="invoices" {
            h2 { "Invoices and receipts" }
            @if v.invoices.is_empty() {
                p class="muted" { "No invoices yet. Each purchase and each plan payment gets one, from Stripe." }
            } @else {
                div class="table-wrap" {
                    table {
                        thead { tr { th { "Date" } th { "Number" } th class="num" { "Amount" } th { "Status" } th { "" } } }
                        tbody {
                            @for i in &v.invoices {
                                tr {
                                    td class="when" { (date(i.created_at)) }
                                    td class="mono" { (i.number.as_deref().unwrap_or("—")) }
                                    td class="num" { (dollars(i.amount_paid_cents)) " " (i.currency.to_uppercase()) }
                                    td { (i.status) }
                                    td {
                                        @if let Some(url) = i.hosted_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                                            a href=(url) rel="noopener noreferrer" { "View" }
                                        }
                                        @if let Some(url) = i.pdf_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                                            " · " a href=(url) rel="noopener noreferrer" { "PDF" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn payment_error(err: PaymentError) -> PageError {
    match err {
        PaymentError::Service(e) => PageError::service(e),
        PaymentError::Stripe(e) => PageError::Internal(layers_core::error::chain(&e)),
    }
}

fn payments(state: &AppState) -> Result<&PaymentService, PageError> {
    state.core.payments.as_deref().ok_or(PageError::NotFound)
}

/// Asks for the password when the login is older than 15 minutes: `None` to go on, or where to
/// send the browser back to.
async fn confirm(state: &AppState, who: &SignedIn, password: Option<String>) -> Option<Response> {
    if !state.core.identity.needs_reauth(&who.user) {
        return None;
    }
    let password = SecretString::from(password.unwrap_or_default());
    match state.core.identity.check_password(&who.user, &password, &who.client).await {
        Ok(()) => None,
        Err(IdentityError::ReauthRequired) => Some(back("reauth")),
        Err(IdentityError::Throttled(_)) => Some(back("throttled")),
        Err(_) => Some(back("password")),
    }
}

fn back(notice: &str) -> Response {
    Redirect::to(&format!("/dashboard/billing?notice={notice}")).into_response()
}

/// Stripe said no, or could not be reached: back to the page, nothing charged.
fn stripe_failed(err: PaymentError) -> Result<Response, PageError> {
    match err {
        PaymentError::Stripe(e) => {
            tracing::warn!(error = %layers_core::error::chain(&e), "a Stripe call of the billing page failed");
            Ok(back("stripe"))
        }
        PaymentError::Service(e) => Err(PageError::service(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct BuyForm {
    csrf: String,
    nonce: String,
    #[serde(default)]
    credits: Option<i64>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

pub async fn buy(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<BuyForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let p = payments(&state)?;
    let credits = match (form.credits, form.amount.as_deref()) {
        (Some(c), _) => c,
        (None, Some(text)) => match parse_dollars(text, p.settings().custom) {
            Ok(c) => c,
            Err(e) => {
                let problem = notice(
                    Tone::Bad,
                    &format!(
                        "{e}: from {} to {}.",
                        dollars(p.settings().custom.min_credits),
                        dollars(p.settings().custom.max_credits)
                    ),
                );
                return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render(&state, &who, Some(problem)).await?));
            }
        },
        (None, None) => return Err(PageError::BadForm),
    };
    if let Some(stop) = confirm(&state, &who, form.password).await {
        return Ok(stop);
    }
    match p.start_top_up(who.user.user_id, credits, &form.nonce).await {
        Ok(to) => Ok(Redirect::to(&to.0).into_response()),
        Err(e) => stripe_failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct PlanForm {
    csrf: String,
    nonce: String,
    tier: String,
    #[serde(default)]
    password: Option<String>,
}

pub async fn plan(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<PlanForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let p = payments(&state)?;
    let tier: Tier = form.tier.parse().map_err(|_| PageError::Invalid("choose one of the plans on the page"))?;
    if let Some(stop) = confirm(&state, &who, form.password).await {
        return Ok(stop);
    }
    match p.start_plan(who.user.user_id, tier, &form.nonce).await {
        Ok(to) => Ok(Redirect::to(&to.0).into_response()),
        Err(e) => stripe_failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn portal(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    match payments(&state)?.portal(who.user.user_id).await {
        Ok(to) => Ok(Redirect::to(&to.0).into_response()),
        Err(e) => stripe_failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct AutoTopUpForm {
    csrf: String,
    #[serde(default)]
    enabled: Option<String>,
    threshold: String,
    amount: String,
    #[serde(default)]
    password: Option<String>,
}

pub async fn auto_topup(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<AutoTopUpForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let p = payments(&state)?;
    // It lets Layers charge the card while the person is away: the password, after 15 minutes.
    if let Some(stop) = confirm(&state, &who, form.password).await {
        return Ok(stop);
    }
    let problem = match (form.threshold.trim().parse::<i64>(), form.amount.trim().parse::<i64>()) {
        (Ok(threshold), Ok(amount)) => {
            match p.set_auto_topup(who.user.user_id, form.enabled.is_some(), threshold, amount).await {
                Ok(()) => return Ok(back("auto-topup")),
                Err(PaymentError::Service(layers_core::ServiceError::Invalid(text))) => text,
                Err(e) => return Err(payment_error(e)),
            }
        }
        _ => "enter whole numbers of credits",
    };
    let content =
        render(&state, &who, Some(notice(Tone::Bad, &format!("Auto top-up was not saved: {problem}.")))).await?;
    Ok(page(StatusCode::UNPROCESSABLE_ENTITY, content))
}

#[derive(Debug, Deserialize)]
pub struct SuccessQuery {
    #[serde(default)]
    session_id: String,
}

/// Where Checkout returns after paying. It grants nothing: it shows whether Stripe's webhook
/// has credited the purchase yet, and reloads itself until it has.
pub async fn success(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<SuccessQuery>,
) -> Result<Response, PageError> {
    let p = payments(&state)?;
    if q.session_id.is_empty() || q.session_id.len() > 255 {
        return Err(PageError::NotFound);
    }
    let record =
        p.checkout(who.user.user_id, &q.session_id).await.map_err(payment_error)?.ok_or(PageError::NotFound)?;
    let done = record.completed_at.is_some();
    let csrf = who.csrf(&state);
    let subscription = record.mode == "subscription";
    let (title, text) = match (done, subscription) {
        (true, false) => ("Credits added", format!("{} credits were added to your balance.", credits(record.credits))),
        (true, true) => ("Plan active", "Your plan is active and your new rate limits apply to every key.".to_owned()),
        (false, _) => (
            "Payment received, credits on the way",
            "Stripe has your payment; we add it the moment Stripe confirms it to us, usually within seconds. This page refreshes by itself.".to_owned(),
        ),
    };
    let content = html! {
        div class="page-head" {
            h1 data-test="checkout-title" { (title) }
        }
        section class="panel" {
            p data-test="checkout-status" data-done=(done) { (text) }
            p { a class="btn" href="/dashboard/billing" { "Back to billing" } }
        }
    };
    let mut resp = page(StatusCode::OK, layout::app(title, Section::Billing, &who.user.email, &csrf, content));
    if !done {
        resp.headers_mut().insert(http::header::REFRESH, http::HeaderValue::from_static("3"));
    }
    Ok(resp)
}

/// Where Checkout returns when the person gives up: nothing was charged.
pub async fn cancelled(_who: SignedIn) -> Response {
    back("cancelled")
}
