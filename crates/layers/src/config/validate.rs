//! Checks a [`Config`] and turns it into [`Settings`]: typed, defaulted, complete.
//! Invariant: production mode (SPEC §8.6) refuses weak or missing settings instead of
//! falling back to a development behaviour.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use layers_core::billing::{BillingSettings, LowerMaxTokens};
use layers_domain::credit::{Caps, TierCaps};
use layers_domain::limits::RequestLimits;
use layers_domain::{
    ImagePrice, Markup, MicroCredits, ModelKind, ModelName, ModelSpec, Price, RouteSpec, SearchContextSize, SearchFees,
};
use layers_providers::{ProviderKind, ProviderSettings, Timeouts};
use layers_server::api::metrics::MetricsAccess;
use layers_store::{backend_of, Backend};
use secrecy::SecretString;

use super::settings::{DatabaseSettings, EmailSettings, PepperSource, Settings};
use super::{catalogue, traffic};
use super::{Config, ModelConfig, Problem, ProviderConfig};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The database when none is configured: `layers.db` in `data_dir` (`./data` by default).
pub const DEFAULT_DATABASE_FILE: &str = "layers.db";
const DEFAULT_APP_ROLE: &str = "layers_app";
const MIN_PEPPER_BYTES: usize = 32;

pub(super) fn validate(c: Config, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) -> Option<Settings> {
    let production = match c.env.as_deref().unwrap_or("development") {
        "development" => false,
        "production" => true,
        other => {
            problems.push(Problem::new("env", format!("must be development or production, not {other:?}")));
            false
        }
    };
    let listen_text = c.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
        problems.push(Problem::new("listen", format!("{listen_text:?} is not host:port (e.g. {DEFAULT_LISTEN})")));
    });
    let public_url = check_public_url(&c, production, problems);
    let allowed_origins = check_origins(&c.allowed_origins, problems);
    let database = check_database(&c, production, problems);
    let pepper = check_pepper(&c, production, problems);
    let markup = Markup::from_percent(c.billing.markup_percent.unwrap_or(0.0))
        .map_err(|e| problems.push(Problem::new("billing.markup_percent", e.to_string())))
        .unwrap_or(Markup::NONE);
    let limits = check_limits(&c, problems);
    let billing = check_billing(&c, problems);
    let rate = traffic::check_rate(&c, problems);
    let redis = traffic::check_redis(&c, problems);
    let ip_guard = traffic::check_ip_guard(&c, problems);
    let proxies = traffic::check_proxies(&c, production, problems);
    let routing = traffic::check_routing(&c, problems);
    let test_keys = traffic::check_test_keys(&c, problems);
    let edge = traffic::check_edge(&c, problems);
    let upstream = check_upstream(&c, problems);
    let (metrics_listen, metrics_access) = check_metrics(&c, production, problems);

    let merged = catalogue::merge(&c, problems);
    let (providers, disabled_providers) = check_providers(&merged.providers, env, production, problems);
    let known_providers: HashSet<&str> = merged.providers.iter().map(|p| p.name.as_str()).collect();
    if !providers.iter().any(|p| p.kind == ProviderKind::Sandbox) {
        problems.push(Problem::new("providers", "the sandbox provider serves test keys and cannot be disabled"));
    }
    let models = check_models(&merged.models, &known_providers, merged.updated, problems);

    let log_json = check_log_format(&c, production, problems);
    let email = check_email(&c, production, problems);
    let sessions = check_sessions(&c, problems);
    let clock_ahead = Duration::from_secs(c.testing.clock_ahead_secs.unwrap_or(0));
    if production && !clock_ahead.is_zero() {
        problems
            .push(Problem::new("testing.clock_ahead_secs", "must not be set in production: the clock is the system's"));
    }
    if production && c.testing.record_responses_dir.is_some() {
        problems.push(Problem::new(
            "testing.record_responses_dir",
            "must not be set in production: responses carry your users' data",
        ));
    }
    let allow_private_webhooks = c.alerts.allow_private_webhooks.unwrap_or(false);
    if production && allow_private_webhooks {
        problems.push(Problem::new(
            "alerts.allow_private_webhooks",
            "must be false in production: alert webhooks must not reach the gateway's own network",
        ));
    }
    let oidc = check_oidc(&c, production, problems);
    let usage_retention = match c.privacy.usage_retention_days {
        None => None,
        Some(d) if d < 7 => {
            problems.push(Problem::new(
                "privacy.usage_retention_days",
                "must be at least 7: the dashboard's runway and charts read the last week",
            ));
            None
        }
        Some(d) => Some(Duration::from_secs(u64::from(d) * 86_400)),
    };
    let disclosure_contact = match c.security.disclosure_contact.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(contact)
            if (contact.starts_with("mailto:") && contact.contains('@')) || contact.starts_with("https://") =>
        {
            if contact.chars().any(char::is_control) {
                problems.push(Problem::new("security.disclosure_contact", "must be one line"));
                None
            } else {
                Some(contact.to_owned())
            }
        }
        Some(_) => {
            problems.push(Problem::new(
                "security.disclosure_contact",
                "must be mailto:security@your.domain or an https:// URL",
            ));
            None
        }
    };
    // The public URL (where Checkout sends people back) is set at start-up, like the e-mails'.
    let payments = super::stripe::check_stripe(&c, production, "", problems);
    let anomaly = super::anomaly::check_anomaly(
        &c,
        layers_core::alerts::WebhookPolicy { allow_private: allow_private_webhooks },
        problems,
    );
    Some(Settings {
        listen: listen.ok()?,
        production,
        public_url,
        data_dir: c.data_dir.clone().unwrap_or_else(|| PathBuf::from("./data")),
        allowed_origins,
        database: database?,
        pepper: pepper?,
        providers,
        disabled_providers,
        models,
        markup,
        billing,
        limits,
        rate,
        redis,
        ip_guard,
        routing,
        test_keys,
        proxies,
        key_cache_capacity: c.keys.cache_capacity.unwrap_or(100_000),
        key_cache_ttl: Duration::from_secs(c.keys.cache_ttl_secs.unwrap_or(60)),
        invalidation_poll: Duration::from_millis(c.keys.invalidation_poll_ms.unwrap_or(250).clamp(10, 500)),
        log_json,
        log_level: c.log.level.clone().unwrap_or_else(|| "info".to_owned()),
        shutdown_timeout: Duration::from_secs(c.server.shutdown_timeout_secs.unwrap_or(30)),
        edge,
        upstream,
        metrics_listen,
        metrics_access,
        email,
        sessions,
        oidc,
        webhooks: layers_core::alerts::WebhookPolicy { allow_private: allow_private_webhooks },
        clock_ahead,
        record_responses: c.testing.record_responses_dir.clone(),
        payments,
        anomaly,
        usage_retention,
        disclosure_contact,
    })
}

fn check_log_format(c: &Config, production: bool, problems: &mut Vec<Problem>) -> bool {
    match c.log.format.as_deref() {
        None => production,
        Some("json") => true,
        Some("text") => false,
        Some(other) => {
            problems.push(Problem::new("log.format", format!("must be text or json, not {other:?}")));
            false
        }
    }
}

fn check_upstream(c: &Config, problems: &mut Vec<Problem>) -> layers_providers::UpstreamLimits {
    let d = layers_providers::UpstreamLimits::default();
    let mut limits = d;
    match c.limits.upstream_buffer_mb {
        Some(mb) if !(16..=65_536).contains(&mb) => {
            problems.push(Problem::new("limits.upstream_buffer_mb", "must be between 16 and 65536"))
        }
        Some(mb) => limits.buffer_bytes = mb * 1024 * 1024,
        None => {}
    }
    match c.limits.image_fetches {
        Some(0) => problems.push(Problem::new("limits.image_fetches", "must be greater than zero")),
        Some(n) => limits.image_fetches = n,
        None => {}
    }
    limits
}

/// Development serves `/metrics` to anyone; production only behind a token or on its own
/// listener.
fn check_metrics(c: &Config, production: bool, problems: &mut Vec<Problem>) -> (Option<SocketAddr>, MetricsAccess) {
    let listen = c.server.metrics_listen.as_deref().and_then(|text| {
        text.parse::<SocketAddr>()
            .map_err(|_| problems.push(Problem::new("server.metrics_listen", format!("{text:?} is not host:port"))))
            .ok()
    });
    let access = match &c.server.metrics_token {
        Some(token) if token.expose().len() < 24 => {
            problems.push(Problem::new("server.metrics_token", "must be at least 24 characters"));
            MetricsAccess::Off
        }
        Some(token) => MetricsAccess::Token(std::sync::Arc::new(SecretString::from(token.expose().to_owned()))),
        None if production || c.server.metrics_listen.is_some() => MetricsAccess::Off,
        None => MetricsAccess::Open,
    };
    (listen, access)
}

fn check_public_url(c: &Config, production: bool, problems: &mut Vec<Problem>) -> Option<String> {
    match &c.public_url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            problems.push(Problem::new("public_url", "must be an http(s) URL"));
            None
        }
        Some(url) if production && !url.starts_with("https://") => {
            problems.push(Problem::new("public_url", "production requires an https:// public URL"));
            None
        }
        None if production => {
            problems.push(Problem::new("public_url", "production requires the public https:// URL of this service"));
            None
        }
        other => other.clone(),
    }
}

fn check_email(c: &Config, production: bool, problems: &mut Vec<Problem>) -> EmailSettings {
    let from = c.email.from.clone().unwrap_or_else(|| "Layers <no-reply@localhost>".to_owned());
    if let Some(url) = &c.email.smtp_url {
        let u = url.expose();
        if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
            problems.push(Problem::new("email.smtp_url", "must be an smtp:// or smtps:// URL"));
        }
        // Links in these messages log people in: never in clear, and never downgradable.
        let host = u.split("://").nth(1).unwrap_or_default().rsplit('@').next().unwrap_or_default();
        let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| host.starts_with(h));
        if production && u.starts_with("smtp://") && !u.contains("tls=required") && !loopback {
            problems.push(Problem::new(
                "email.smtp_url",
                "production requires TLS to the SMTP server: smtps://…:465, or smtp://…:587?tls=required",
            ));
        }
    } else if production {
        problems.push(Problem::new(
            "email.smtp_url",
            "production requires an SMTP server (the console mailer only writes messages to the log); \
             set LAYERS_EMAIL__SMTP_URL=smtps://user:password@smtp.example.com:465",
        ));
    }
    if production && c.email.from.is_none() {
        problems
            .push(Problem::new("email.from", "production requires a sender, e.g. \"Layers <no-reply@example.com>\""));
    }
    EmailSettings { smtp_url: c.email.smtp_url.clone(), from }
}

fn check_oidc(
    c: &Config,
    production: bool,
    problems: &mut Vec<Problem>,
) -> Option<layers_core::identity::oidc::OidcSettings> {
    let client_id = c.oidc.client_id.clone()?;
    let issuer = c.oidc.issuer.clone().unwrap_or_else(|| "https://accounts.google.com".to_owned());
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| issuer.starts_with(p));
    if !(issuer.starts_with("https://") || (loopback && !production)) {
        problems.push(Problem::new(
            "oidc.issuer",
            "must be an https:// URL (a plain-HTTP loopback issuer is accepted outside production)",
        ));
    }
    let Some(secret) = c.oidc.client_secret.clone() else {
        problems.push(Problem::new("oidc.client_secret", "is required with oidc.client_id"));
        return None;
    };
    Some(layers_core::identity::oidc::OidcSettings { issuer, client_id, client_secret: secret.into_inner() })
}

fn check_sessions(c: &Config, problems: &mut Vec<Problem>) -> layers_domain::identity::session::SessionPolicy {
    let mut policy = layers_domain::identity::session::SessionPolicy::default();
    match c.sessions.idle_hours {
        Some(0) => problems.push(Problem::new("sessions.idle_hours", "must be at least 1")),
        Some(h) => policy.idle = Duration::from_secs(h.min(24 * 365) * 3600),
        None => {}
    }
    match c.sessions.absolute_days {
        Some(0) => problems.push(Problem::new("sessions.absolute_days", "must be at least 1")),
        Some(d) => policy.absolute = Duration::from_secs(d.min(365) * 24 * 3600),
        None => {}
    }
    policy
}

fn check_origins(origins: &[String], problems: &mut Vec<Problem>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, o) in origins.iter().enumerate() {
        let path = format!("allowed_origins[{i}]");
        if o.contains('*') {
            problems.push(Problem::new(&path, "wildcards are not allowed; list each origin"));
        } else if !(o.starts_with("https://") || o.starts_with("http://"))
            || o.trim_end_matches('/').matches('/').count() != 2
        {
            problems.push(Problem::new(&path, format!("{o:?} is not an origin like https://app.example.com")));
        } else {
            out.push(o.trim_end_matches('/').to_owned());
        }
    }
    out
}

fn check_database(c: &Config, production: bool, problems: &mut Vec<Problem>) -> Option<DatabaseSettings> {
    // With no database configured, the state lives where the rest does: in `data_dir`.
    let url = c.database.url.clone().unwrap_or_else(|| {
        let dir = c.data_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("./data"));
        format!("sqlite://{}", dir.join(DEFAULT_DATABASE_FILE).display())
    });
    let Some(backend) = backend_of(&url) else {
        problems.push(Problem::new("database.url", "must start with sqlite:// or postgres://"));
        return None;
    };
    if production && backend == Backend::Sqlite {
        problems.push(Problem::new("database.url", "production requires PostgreSQL"));
    }
    let migrate_url = c.database.migrate_url.clone().unwrap_or_else(|| url.clone());
    if backend_of(&migrate_url) != Some(backend) {
        problems.push(Problem::new("database.migrate_url", "must name the same kind of database as database.url"));
    }
    let app_role = match (backend, c.database.app_role.as_deref()) {
        (Backend::Sqlite, _) => None,
        (Backend::Postgres, Some("")) => None,
        (Backend::Postgres, Some(role)) => Some(role.to_owned()),
        (Backend::Postgres, None) => Some(DEFAULT_APP_ROLE.to_owned()),
    };
    let default_max = if backend == Backend::Sqlite { 4 } else { 16 };
    Some(DatabaseSettings {
        auto_migrate: c.database.auto_migrate.unwrap_or(backend == Backend::Sqlite && !production),
        max_connections: c.database.max_connections.unwrap_or(default_max).max(1),
        url,
        migrate_url,
        app_role,
        backend,
    })
}

fn check_pepper(c: &Config, production: bool, problems: &mut Vec<Problem>) -> Option<PepperSource> {
    let current = c.keys.pepper_version.unwrap_or(1);
    let mut older = BTreeMap::new();
    for (version, secret) in &c.keys.old_peppers {
        match version.parse::<i32>() {
            Ok(v) if v != current => {
                if secret.expose().len() < MIN_PEPPER_BYTES {
                    problems.push(Problem::new(&format!("keys.old_peppers.{version}"), "must be at least 32 bytes"));
                }
                older.insert(v, secret.clone().into_inner());
            }
            _ => problems.push(Problem::new(
                &format!("keys.old_peppers.{version}"),
                "keys are version numbers other than keys.pepper_version",
            )),
        }
    }
    match &c.keys.pepper {
        Some(p) if p.expose().len() < MIN_PEPPER_BYTES => {
            problems.push(Problem::new("keys.pepper", "must be at least 32 bytes (e.g. `openssl rand -base64 48`)"));
            None
        }
        Some(p) => {
            let mut peppers = older;
            peppers.insert(current, p.clone().into_inner());
            Some(PepperSource::Configured { current, peppers })
        }
        None if production => {
            problems.push(Problem::new(
                "keys.pepper",
                "production requires a pepper: set LAYERS_KEYS__PEPPER or LAYERS_KEYS__PEPPER_FILE",
            ));
            None
        }
        None => {
            let dir = c.data_dir.clone().unwrap_or_else(|| PathBuf::from("./data"));
            Some(PepperSource::DevFile { path: dir.join("pepper"), current, older })
        }
    }
}

fn check_billing(c: &Config, problems: &mut Vec<Problem>) -> BillingSettings {
    let d = BillingSettings::default();
    let b = &c.billing;
    let lower_max_tokens = match b.lower_max_tokens.as_deref() {
        None | Some("implicit") => LowerMaxTokens::Implicit,
        Some("never") => LowerMaxTokens::Never,
        Some("always") => LowerMaxTokens::Always,
        Some(other) => {
            problems.push(Problem::new(
                "billing.lower_max_tokens",
                format!("must be never, implicit or always, not {other:?}"),
            ));
            LowerMaxTokens::Implicit
        }
    };
    let lease_ttl = Duration::from_secs(b.lease_ttl_secs.unwrap_or(d.lease_ttl.as_secs()).max(1));
    let mut tier_caps = TierCaps::default();
    let tiers = [
        ("free", &c.tiers.free, &mut tier_caps.free),
        ("starter", &c.tiers.starter, &mut tier_caps.starter),
        ("pro", &c.tiers.pro, &mut tier_caps.pro),
        ("team", &c.tiers.team, &mut tier_caps.team),
    ];
    for (name, given, caps) in tiers {
        let Some(given) = given else { continue };
        let per_request =
            credits(&format!("tiers.{name}.max_credits_per_request"), given.max_credits_per_request, problems);
        let per_hour = credits(&format!("tiers.{name}.max_credits_per_hour"), given.max_credits_per_hour, problems);
        *caps = Caps { per_request: per_request.or(caps.per_request), per_hour: per_hour.or(caps.per_hour) };
    }
    BillingSettings {
        tier_caps,
        lease_ttl,
        idle_release: b.idle_release_ms.map(Duration::from_millis).unwrap_or(d.idle_release),
        reaper_interval: b.reaper_interval_secs.map(|s| Duration::from_secs(s.max(1))).unwrap_or(d.reaper_interval),
        lower_max_tokens,
        max_block: credits("billing.max_lease_credits", b.max_lease_credits, problems).unwrap_or(d.max_block),
        db_timeout: b.db_timeout_ms.map(|ms| Duration::from_millis(ms.max(10))).unwrap_or(d.db_timeout),
        reclaim_wait: b.reclaim_wait_ms.map(Duration::from_millis).unwrap_or(d.reclaim_wait),
        max_backlog: b.max_settlement_backlog.unwrap_or(d.max_backlog).max(1),
        backlog_wait: b.backlog_wait_ms.map(Duration::from_millis).unwrap_or(d.backlog_wait),
        journal: Some(c.data_dir.clone().unwrap_or_else(|| PathBuf::from("./data")).join("settlements.journal")),
        // Leases stop being renewed when a shutdown begins: retrying settlements for longer than a
        // third of their TTL would let another node's reaper end them first.
        shutdown_deadline: b
            .shutdown_flush_secs
            .map(Duration::from_secs)
            .unwrap_or(d.shutdown_deadline)
            .min(lease_ttl / 3),
        prompt_bytes_per_token: match b.prompt_bytes_per_token {
            None => d.prompt_bytes_per_token,
            Some(n @ 1..=4) => n,
            Some(_) => {
                problems.push(Problem::new("billing.prompt_bytes_per_token", "must be 1, 2, 3 or 4"));
                d.prompt_bytes_per_token
            }
        },
    }
}

/// A number of credits from the config, exact to the micro-credit.
fn credits(path: &str, value: Option<f64>, problems: &mut Vec<Problem>) -> Option<MicroCredits> {
    let v = value?;
    if !v.is_finite() || !(0.0..=1e12).contains(&v) {
        problems.push(Problem::new(path, "must be a number of credits, zero or more"));
        return None;
    }
    Some(MicroCredits((v * 1e6).round() as i64))
}

fn check_limits(c: &Config, problems: &mut Vec<Problem>) -> RequestLimits {
    let d = RequestLimits::default();
    let mut positive = |path: &str, v: Option<usize>, default: usize| match v {
        Some(0) => {
            problems.push(Problem::new(path, "must be greater than zero"));
            default
        }
        Some(v) => v,
        None => default,
    };
    RequestLimits {
        max_body_bytes: positive("limits.max_body_bytes", c.limits.max_body_bytes, d.max_body_bytes),
        max_messages: positive("limits.max_messages", c.limits.max_messages, d.max_messages),
        max_message_chars: positive("limits.max_message_chars", c.limits.max_message_chars, d.max_message_chars),
    }
}

fn check_providers(
    providers: &[ProviderConfig],
    env: &BTreeMap<String, String>,
    production: bool,
    problems: &mut Vec<Problem>,
) -> (Vec<ProviderSettings>, Vec<(String, String)>) {
    let mut enabled = Vec::new();
    let mut disabled = Vec::new();
    let mut seen = HashSet::new();
    for p in providers {
        let path = format!("providers.{}", p.name);
        if !seen.insert(p.name.as_str()) {
            problems.push(Problem::new(&path, "defined twice"));
            continue;
        }
        let kind = match p.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            "sandbox" => ProviderKind::Sandbox,
            other => {
                problems.push(Problem::new(
                    &format!("{path}.kind"),
                    format!("must be openai, anthropic, gemini or sandbox, not {other:?}"),
                ));
                continue;
            }
        };
        let base_url = p.base_url.clone().unwrap_or_else(|| default_base_url(kind).to_owned());
        if kind != ProviderKind::Sandbox && !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            problems.push(Problem::new(&format!("{path}.base_url"), "must be an http(s) URL"));
            continue;
        }
        if production && p.allow_private_image_urls == Some(true) {
            problems.push(Problem::new(
                &format!("{path}.allow_private_image_urls"),
                "lets clients make the gateway fetch from its own network; refused in production",
            ));
        }
        if production && base_url.starts_with("http://") && !is_loopback_url(&base_url) {
            problems.push(Problem::new(
                &format!("{path}.base_url"),
                "plain http would send the provider key and prompts in clear; use https (http only to loopback)",
            ));
            continue;
        }
        let api_key = match provider_key(p, env, &path, problems) {
            Ok(key) => key,
            Err(Some(reason)) => {
                disabled.push((p.name.clone(), reason));
                continue;
            }
            Err(None) => continue,
        };
        let d = Timeouts::default();
        let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
        enabled.push(ProviderSettings {
            name: p.name.clone(),
            kind,
            base_url,
            api_key,
            timeouts: Timeouts {
                connect: ms(p.connect_timeout_ms, d.connect),
                first_byte: ms(p.first_byte_timeout_ms, d.first_byte),
                idle: ms(p.idle_timeout_ms, d.idle),
                total: ms(p.total_timeout_ms, d.total),
            },
            allow_private_image_urls: p.allow_private_image_urls.unwrap_or(false),
        });
    }
    (enabled, disabled)
}

/// The provider's API key: from its file, or from its environment variable. `Err(Some(why))`
/// disables the provider (its variable is not set); `Err(None)` is a problem already reported.
fn provider_key(
    p: &ProviderConfig,
    env: &BTreeMap<String, String>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Result<Option<SecretString>, Option<String>> {
    match (&p.api_key_file, &p.api_key_env) {
        (Some(file), _) => match std::fs::read_to_string(file) {
            Ok(k) => Ok(Some(SecretString::from(k.trim().to_owned()))),
            Err(err) => {
                problems.push(Problem::new(
                    &format!("{path}.api_key_file"),
                    format!("cannot read {}: {err}", file.display()),
                ));
                Err(None)
            }
        },
        (None, Some(var)) => match env.get(var).filter(|v| !v.is_empty()) {
            Some(k) => Ok(Some(SecretString::from(k.clone()))),
            None => Err(Some(format!("{var} is not set"))),
        },
        (None, None) => Ok(None),
    }
}

/// `http://localhost…`, `http://127.x.y.z…` or `http://[::1]…`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn default_base_url(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "https://api.openai.com/v1",
        ProviderKind::Anthropic => "https://api.anthropic.com/v1",
        ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta",
        ProviderKind::Sandbox => "",
    }
}

fn check_models(
    models: &[ModelConfig],
    providers: &HashSet<&str>,
    created: i64,
    problems: &mut Vec<Problem>,
) -> Vec<ModelSpec> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for m in models {
        let path = format!("models.{}", m.name);
        let before = problems.len();
        if !seen.insert(m.name.as_str()) {
            problems.push(Problem::new(&path, "defined twice"));
        }
        let name = ModelName::parse(&m.name).map_err(|e| problems.push(Problem::new(&path, e.to_string())));
        let kind = match m.kind.as_deref().unwrap_or("chat") {
            "chat" => ModelKind::Chat,
            "embedding" => ModelKind::Embedding,
            "image" => ModelKind::Image,
            other => {
                problems.push(Problem::new(
                    &format!("{path}.kind"),
                    format!("must be chat, embedding or image, not {other:?}"),
                ));
                ModelKind::Chat
            }
        };
        if m.routes.is_empty() {
            problems.push(Problem::new(&format!("{path}.routes"), "needs at least one route"));
        }
        for r in &m.routes {
            if !providers.contains(r.provider.as_str()) {
                problems.push(Problem::new(&format!("{path}.routes"), format!("unknown provider {:?}", r.provider)));
            }
        }
        let price = model_price(m, kind, &path, problems);
        let (search_fees, image_prices) = model_fees(m, &path, problems);
        if kind == ModelKind::Chat && m.context_window.unwrap_or(0) == 0 {
            problems.push(Problem::new(&format!("{path}.context_window"), "chat models need a context window"));
        }
        if problems.len() > before {
            continue;
        }
        let (Ok(name), Some(price)) = (name, price) else { continue };
        out.push(ModelSpec {
            name,
            kind,
            routes: m
                .routes
                .iter()
                .map(|r| RouteSpec { provider: r.provider.clone(), upstream_model: r.model.clone() })
                .collect(),
            list_price: price,
            context_window: m.context_window.unwrap_or(0),
            max_output_tokens: m.max_output_tokens.unwrap_or(0),
            created: m.created.unwrap_or(created),
            image_input_tokens: m.image_tokens,
            file_tokens: m.file_tokens,
            search_fees,
            image_prices,
            image_default_quality: m.image_quality.clone(),
            image_default_size: m.image_size.clone(),
        });
    }
    out
}

/// A model's per-request search fees and per-image prices by quality and size.
fn model_fees(m: &ModelConfig, path: &str, problems: &mut Vec<Problem>) -> (Option<SearchFees>, Vec<ImagePrice>) {
    let usd = |field: &str, v: f64, problems: &mut Vec<Problem>| {
        MicroCredits::from_usd(v)
            .map_err(|e| problems.push(Problem::new(&format!("{path}.{field}"), e.to_string())))
            .ok()
    };
    let search = match (m.search_fee_low, m.search_fee_medium, m.search_fee_high) {
        (None, None, None) => None,
        (Some(low), Some(medium), Some(high)) => {
            let low = usd("search_fee_low", low, problems);
            let medium = usd("search_fee_medium", medium, problems);
            let high = usd("search_fee_high", high, problems);
            low.zip(medium).zip(high).map(|((l, m), h)| (l, m, h))
        }
        _ => {
            problems.push(Problem::new(path, "search fees need search_fee_low, search_fee_medium and search_fee_high"));
            None
        }
    };
    let mut prices = Vec::new();
    for (i, p) in m.image_prices.iter().enumerate() {
        if let Some(price) = usd(&format!("image_prices[{i}].per_image"), p.per_image, problems) {
            prices.push(ImagePrice { quality: p.quality.clone(), size: p.size.clone(), price });
        }
    }
    let default_size = match m.search_default.as_deref().map(SearchContextSize::parse) {
        None => SearchContextSize::Low,
        Some(Some(size)) => size,
        Some(None) => {
            problems.push(Problem::new(&format!("{path}.search_default"), "must be low, medium or high"));
            SearchContextSize::Low
        }
    };
    let fees = search.map(|(low, medium, high)| SearchFees {
        low,
        medium,
        high,
        default_size,
        by_default: m.searches_by_default,
    });
    if m.searches_by_default && fees.is_none() {
        problems.push(Problem::new(path, "searches_by_default needs search fees (search_fee_low, …)"));
    }
    (fees, prices)
}

/// A model's price. Refused when missing: billing an unknown price as $0 is a known pain.
fn model_price(m: &ModelConfig, kind: ModelKind, path: &str, problems: &mut Vec<Problem>) -> Option<Price> {
    if m.free {
        return Some(Price::default());
    }
    let missing = match kind {
        ModelKind::Chat => m.input_per_mtok.is_none() || m.output_per_mtok.is_none(),
        ModelKind::Embedding => m.input_per_mtok.is_none(),
        ModelKind::Image => m.per_image.is_none() && m.input_per_mtok.is_none(),
    };
    if missing {
        let what = match kind {
            ModelKind::Chat => "input_per_mtok and output_per_mtok",
            ModelKind::Embedding => "input_per_mtok",
            ModelKind::Image => "per_image",
        };
        problems.push(Problem::new(path, format!("has no price: set {what}, or free = true")));
        return None;
    }
    Price::from_usd(
        m.input_per_mtok.unwrap_or(0.0),
        m.output_per_mtok.unwrap_or(0.0),
        m.cached_input_per_mtok,
        m.per_image,
    )
    .and_then(|p| p.with_cache_write(m.cache_write_per_mtok))
    .and_then(|p| match (m.long_context_above_tokens, m.long_context_input_per_mtok, m.long_context_output_per_mtok) {
        (Some(_), Some(input), Some(output))
            if input < m.input_per_mtok.unwrap_or(0.0) || output < m.output_per_mtok.unwrap_or(0.0) =>
        {
            problems.push(Problem::new(path, "long-context rates must not be below the model's own rates"));
            Ok(p)
        }
        (Some(above), Some(input), Some(output)) => p.with_long_context(
            above,
            input,
            output,
            m.long_context_cached_input_per_mtok,
            m.long_context_cache_write_per_mtok,
        ),
        (None, None, None) => Ok(p),
        _ => {
            problems.push(Problem::new(
                path,
                "long-context pricing needs long_context_above_tokens, long_context_input_per_mtok and long_context_output_per_mtok",
            ));
            Ok(p)
        }
    })
    .map_err(|e| problems.push(Problem::new(path, e.to_string())))
    .ok()
}
