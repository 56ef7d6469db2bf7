//! `GET /metrics`: Prometheus text format. Invariant: labels carry no user data (status codes
//! only); every counter is read from the component that owns it.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;

use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let core = &state.core;
    counter(&mut out, "layers_requests_total", "HTTP requests answered, by status code.", &state.metrics.by_status());
    let auth = core.auth.stats();
    single(
        &mut out,
        "layers_auth_cache_hits_total",
        "Authentications answered from the key cache.",
        auth.cache_hits.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "layers_auth_db_lookups_total",
        "Authentications that needed the database.",
        auth.db_lookups.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "layers_auth_format_rejections_total",
        "Keys refused for their format or checksum, without a lookup.",
        auth.format_rejections.load(Ordering::Relaxed),
    );
    let billing = core.billing.stats();
    single(
        &mut out,
        "layers_billing_lease_refills_total",
        "Credit lease refills from the database.",
        billing.refills.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "layers_billing_shortfalls_total",
        "Requests whose cost exceeded what the balance covered.",
        billing.shortfalls.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "layers_billing_shortfall_micro_credits_total",
        "Cost not charged because the balance could not cover it.",
        billing.shortfall_micros.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "layers_billing_refused_settlements_total",
        "Settlements refused because their lease had been reaped.",
        billing.refused_settlements.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP layers_settlement_backlog Settlements waiting to be written.");
    let _ = writeln!(out, "# TYPE layers_settlement_backlog gauge");
    let _ = writeln!(out, "layers_settlement_backlog {}", core.billing.sink().backlog());
    let mut resp = out.into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

fn single(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, by_status: &[(u16, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (status, n) in by_status {
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
    }
}
