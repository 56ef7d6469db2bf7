//! `GET /metrics`: Prometheus text format. Invariant: labels carry no user data (status codes
//! only); every counter is read from the component that owns it; on the public listener the
//! page is served only as [`MetricsAccess`] allows (production: not at all by default).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue};
use layers_core::codes::ErrorCode;
use layers_core::Core;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Who may read `/metrics` on the public listener.
#[derive(Clone, Debug, Default)]
pub enum MetricsAccess {
    /// Anyone (development).
    #[default]
    Open,
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(Arc<SecretString>),
    /// Nobody: the page is on `server.metrics_listen`, or off (the production default).
    Off,
}

impl MetricsAccess {
    fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            MetricsAccess::Open => true,
            MetricsAccess::Off => false,
            MetricsAccess::Token(token) => {
                let sent = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                bool::from(sent.as_bytes().ct_eq(token.expose_secret().as_bytes()))
            }
        }
    }
}

/// `/metrics` on the public listener.
pub async fn public_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_access.allows(&headers) {
        // As if there were no such page: nothing tells a scanner it exists.
        return ApiError::NotFound { message: "Not found".into(), code: ErrorCode::NotFound }.into_response();
    }
    metrics(State(state)).await
}

/// `/metrics` itself (also the whole of the private metrics listener).
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let core = &state.core;
    counter(&mut out, "layers_requests_total", "HTTP requests answered, by status code.", &state.metrics.by_status());
    edge(&mut out, &state);
    auth(&mut out, core);
    billing(&mut out, core);
    rate_limits(&mut out, core);
    redis(&mut out, core);
    ip_guard(&mut out, core);
    anomalies(&mut out, core);
    routing(&mut out, core.chat.router());
    let mut resp = out.into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

/// Authentication: the cache, the database, refused formats.
fn auth(out: &mut String, core: &Core) {
    let auth = core.auth.stats();
    single(
        out,
        "layers_auth_cache_hits_total",
        "Authentications answered from the key cache.",
        auth.cache_hits.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_auth_db_lookups_total",
        "Authentications that needed the database.",
        auth.db_lookups.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_auth_format_rejections_total",
        "Keys refused for their format or checksum, without a lookup.",
        auth.format_rejections.load(Ordering::Relaxed),
    );
}

/// Billing: leases, shortfalls, settlements, the database.
fn billing(out: &mut String, core: &Core) {
    let billing = core.billing.stats();
    single(
        out,
        "layers_billing_lease_refills_total",
        "Credit lease refills from the database.",
        billing.refills.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_shortfalls_total",
        "Requests whose cost exceeded what the balance covered.",
        billing.shortfalls.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_shortfall_micro_credits_total",
        "Cost not charged because the balance could not cover it.",
        billing.shortfall_micros.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_refused_settlements_total",
        "Settlements refused because their lease had been reaped.",
        billing.refused_settlements.load(Ordering::Relaxed),
    );
    gauge(out, "layers_settlement_backlog", "Settlements waiting to be written.", core.billing.sink().backlog());
    single(
        out,
        "layers_billing_reclaims_total",
        "Requests that asked other leases of their account for idle credit.",
        billing.reclaims.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_backpressure_waits_total",
        "Requests that waited because settlements were not written fast enough.",
        billing.backpressure_waits.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_journaled_total",
        "Settlements journaled at shutdown because the database was unreachable.",
        billing.journaled.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_billing_replayed_total",
        "Journaled settlements written at start-up.",
        billing.replayed.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "layers_billing_database_up",
        "Whether billing's last database call succeeded.",
        u64::from(core.billing.database_up()),
    );
    single(
        out,
        "layers_billing_database_failures_total",
        "Billing database calls that failed or timed out.",
        core.billing.database_failures(),
    );
}

/// Rate limits.
fn rate_limits(out: &mut String, core: &Core) {
    let rate = core.limiter.stats();
    single(
        out,
        "layers_rate_limit_rejections_total",
        "Requests refused by a key's requests-per-minute limit.",
        rate.rejections.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_rate_limit_token_rejections_total",
        "Requests refused by a key's tokens-per-minute limit.",
        rate.token_rejections.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_rate_limit_local_decisions_total",
        "Rate-limit decisions made by this node alone (no Redis, or Redis down).",
        rate.local_decisions.load(Ordering::Relaxed),
    );
    single(
        out,
        "layers_rate_limit_batched_admissions_total",
        "Admissions from slots of a hot key's window this node reserved in Redis ahead.",
        rate.batched.load(Ordering::Relaxed),
    );
}

/// Redis, when configured.
fn redis(out: &mut String, core: &Core) {
    if let Some(redis) = &core.redis {
        gauge(out, "layers_redis_up", "Whether Redis answers (1) or limits are local (0).", u64::from(redis.is_up()));
        let stats = redis.stats();
        single(
            out,
            "layers_redis_fallbacks_total",
            "Times this node fell back to local limits because Redis was unreachable.",
            stats.fallbacks.load(Ordering::Relaxed),
        );
        single(
            out,
            "layers_redis_recoveries_total",
            "Times Redis came back and limits became global again.",
            stats.recoveries.load(Ordering::Relaxed),
        );
        single(
            out,
            "layers_redis_notices_received_total",
            "Invalidations and blocks received from other nodes over Redis.",
            core.notices.received.load(Ordering::Relaxed),
        );
    }
}

/// Anomalies raised by this node, by rule.
fn anomalies(out: &mut String, core: &Core) {
    let stats = core.alerts.anomaly_stats();
    let _ = writeln!(out, "# HELP layers_anomalies_total Anomaly rules fired on this node, by rule.");
    let _ = writeln!(out, "# TYPE layers_anomalies_total counter");
    for (rule, n) in [
        ("rapid_key_creation", &stats.rapid_key_creation),
        ("usage_spike", &stats.usage_spike),
        ("expensive_models", &stats.expensive_models),
        ("repeated_refunds", &stats.repeated_refunds),
    ] {
        let _ = writeln!(out, "layers_anomalies_total{{rule=\"{rule}\"}} {}", n.load(Ordering::Relaxed));
    }
}

/// Failed authentications and IP blocks.
fn ip_guard(out: &mut String, core: &Core) {
    let guard = core.ip_guard.stats();
    single(
        out,
        "layers_auth_failures_total",
        "Failed authentications counted towards IP blocking.",
        guard.failures.load(Ordering::Relaxed),
    );
    single(out, "layers_ip_blocks_total", "IPs this node blocked.", guard.blocks.load(Ordering::Relaxed));
    single(
        out,
        "layers_ip_blocked_requests_total",
        "Requests refused because their IP is blocked.",
        guard.refused.load(Ordering::Relaxed),
    );
}

fn edge(out: &mut String, state: &AppState) {
    gauge(out, "layers_connections_open", "Client connections open on this node.", state.connections.open() as u64);
    gauge(out, "layers_requests_in_flight", "Requests in flight on this node.", state.shedding.in_flight() as u64);
    gauge(
        out,
        "layers_upstream_buffer_free_bytes",
        "Bytes of the node's upstream buffer budget not in use.",
        state.core.chat.upstream_budget().free_bytes() as u64,
    );
    single(
        out,
        "layers_overloaded_total",
        "Requests refused with 503 overloaded (max_in_flight reached).",
        state.shedding.shed.load(Ordering::Relaxed),
    );
}

fn routing(out: &mut String, router: &layers_core::chat::routing::Router) {
    let r = router.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    single(
        out,
        "layers_upstream_attempts_total",
        "Calls made to upstream routes, retries included.",
        load(&r.attempts),
    );
    single(out, "layers_upstream_retries_total", "Retries on the same route after a failure.", load(&r.retries));
    single(out, "layers_upstream_fallovers_total", "Requests moved on to a model's next route.", load(&r.fallovers));
    single(
        out,
        "layers_route_breaker_opened_total",
        "Times a failing route was taken out of rotation.",
        load(&r.breaker_opened),
    );
    single(
        out,
        "layers_route_breaker_skips_total",
        "Routes passed over because they were out of rotation.",
        load(&r.skipped_open),
    );
    let _ = writeln!(
        out,
        "# HELP layers_gateway_overhead_seconds Time the gateway spent on a request before calling the provider \
         (authentication, limits, hold, routing)."
    );
    let _ = writeln!(out, "# TYPE layers_gateway_overhead_seconds histogram");
    histogram(out, "layers_gateway_overhead_seconds", "", &router.overhead());
    let _ = writeln!(
        out,
        "# HELP layers_upstream_latency_seconds Time a provider took to answer (the whole body, or a stream's first \
         chunk), per attempt, by provider."
    );
    let _ = writeln!(out, "# TYPE layers_upstream_latency_seconds histogram");
    for (provider, snapshot) in router.upstream_latency() {
        let label = format!("provider=\"{}\"", provider.replace(['"', '\\', '\n'], "_"));
        histogram(out, "layers_upstream_latency_seconds", &label, &snapshot);
    }
    let open = router.open_routes();
    let _ = writeln!(out, "# HELP layers_route_open Routes out of rotation now (1), by provider/upstream model.");
    let _ = writeln!(out, "# TYPE layers_route_open gauge");
    for route in open {
        let _ = writeln!(out, "layers_route_open{{route=\"{}\"}} 1", route.replace(['"', '\\', '\n'], "_"));
    }
}

fn single(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// One histogram's samples (its `# HELP`/`# TYPE` written once by the caller), with `labels`
/// (`a="b"`, or empty) on each.
fn histogram(out: &mut String, name: &str, labels: &str, h: &layers_core::histogram::Snapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in layers_core::histogram::BUCKETS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, by_status: &[(u16, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (status, n) in by_status {
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
    }
}
