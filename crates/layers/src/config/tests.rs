use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
    vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn paths(err: ConfigErrors) -> Vec<String> {
    err.0.into_iter().map(|p| p.path).collect()
}

#[test]
fn the_embedded_default_needs_nothing() {
    let s = load(None, &env(&[])).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.database.url, "sqlite://./data/layers.db");
    // A data_dir holds the default database too, wherever the command runs from.
    let f = file("data_dir = \"/srv/layers\"\n");
    let elsewhere = load(Some(f.path()), &env(&[])).unwrap();
    assert_eq!(elsewhere.database.url, "sqlite:///srv/layers/layers.db");
    assert!(s.database.auto_migrate);
    assert!(!s.production);
    assert!(matches!(s.pepper, PepperSource::DevFile { .. }));
    assert!(s.providers.iter().any(|p| p.name == "sandbox"));
    assert!(s.disabled_providers.iter().any(|(n, why)| n == "openai" && why.contains("OPENAI_API_KEY")));
    assert!(s.models.iter().any(|m| m.name.as_str() == "sandbox/echo"));
}

#[test]
fn environment_overrides_the_file() {
    let f = file("listen = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite://other.db\"\n");
    let s = load(
        Some(f.path()),
        &env(&[
            ("LAYERS_LISTEN", "0.0.0.0:9999"),
            ("LAYERS_DATABASE_URL", "postgres://u@h/db"),
            ("OPENAI_API_KEY", "sk-test"),
        ]),
    )
    .unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(s.database.url, "postgres://u@h/db");
    assert_eq!(s.database.app_role.as_deref(), Some("layers_app"));
    assert!(!s.database.auto_migrate);
    assert!(s.providers.iter().any(|p| p.name == "openai"));
}

#[test]
fn the_issue_example_shape_loads() {
    let f = file(
        r#"
[[providers]]
name = "openai"            # referenced by routes
kind = "openai"            # openai | anthropic | gemini | sandbox
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[[models]]
name = "openai/gpt-4o-mini"
routes = [{ provider = "openai", model = "gpt-4o-mini" }]
input_per_mtok = 0.15      # USD per million tokens
output_per_mtok = 0.60
context_window = 128000
max_output_tokens = 16384
"#,
    );
    let s = load(Some(f.path()), &env(&[("OPENAI_API_KEY", "sk-x")])).unwrap();
    let m = s.models.iter().find(|m| m.name.as_str() == "openai/gpt-4o-mini").unwrap();
    assert_eq!(m.list_price.input.micros_per_mtok(), 15_000_000);
    // The operator's entry replaced the built-in one, so the cached price fell back to input.
    assert_eq!(m.list_price.cached_input, m.list_price.input);
}

#[test]
fn a_model_without_a_price_is_refused_unless_free() {
    let f = file(
        r#"
[[models]]
name = "sandbox/unpriced"
routes = [{ provider = "sandbox", model = "x" }]
context_window = 1000

[[models]]
name = "sandbox/gift"
routes = [{ provider = "sandbox", model = "x" }]
context_window = 1000
free = true
"#,
    );
    let err = load(Some(f.path()), &env(&[])).unwrap_err();
    assert_eq!(paths(err), vec!["models.sandbox/unpriced"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let f = file(
        r#"
listen = "nowhere"
env = "staging"
colour = "blue"
[limits]
max_messages = 0
[billing]
markup_percent = "lots"
[[models]]
name = "x/y"
routes = [{ provider = "ghost", model = "y" }]
input_per_mtok = 1.0
output_per_mtok = 1.0
context_window = 10
"#,
    );
    let got = paths(load(Some(f.path()), &env(&[])).unwrap_err());
    for want in ["listen", "env", "colour", "limits.max_messages", "billing.markup_percent", "models.x/y.routes"] {
        assert!(got.iter().any(|p| p == want), "missing {want} in {got:?}");
    }
}

#[test]
fn production_refuses_weak_settings() {
    let f = file("env = \"production\"\npublic_url = \"http://layers.example\"\nallowed_origins = [\"*\"]\n");
    let got = paths(load(Some(f.path()), &env(&[])).unwrap_err());
    for want in ["database.url", "keys.pepper", "public_url", "allowed_origins[0]", "email.smtp_url", "email.from"] {
        assert!(got.iter().any(|p| p == want), "missing {want} in {got:?}");
    }
    let ok = load(
        None,
        &env(&[
            ("LAYERS_ENV", "production"),
            ("LAYERS_PUBLIC_URL", "https://layers.example"),
            ("LAYERS_DATABASE_URL", "postgres://layers@db/layers"),
            ("LAYERS_KEYS__PEPPER", "0123456789abcdef0123456789abcdef-long-enough"),
            ("LAYERS_EMAIL__SMTP_URL", "smtps://resend:re_secret@smtp.resend.com:465"),
            ("LAYERS_EMAIL__FROM", "Layers <no-reply@layers.example>"),
        ]),
    )
    .unwrap();
    assert!(ok.production && ok.log_json);
    assert!(!format!("{:?}", ok.email).contains("re_secret"), "the SMTP password never prints");
}

#[test]
fn short_peppers_are_refused_and_secrets_never_print() {
    let err = load(None, &env(&[("LAYERS_KEYS__PEPPER", "12345")])).unwrap_err();
    assert_eq!(paths(err), vec!["keys.pepper"]);
    let (config, _) = read(None, &env(&[("LAYERS_KEYS__PEPPER", "super-secret-pepper-value-that-is-long")]));
    let printed = toml::to_string(&config).unwrap();
    assert!(!printed.contains("super-secret"));
    assert!(printed.contains("[redacted]"));
    assert!(!format!("{config:?}").contains("super-secret"));
}

#[test]
fn rate_limits_redis_and_security_settings_load() {
    let s = load(None, &env(&[])).unwrap();
    assert_eq!(
        [s.rate.free, s.rate.starter, s.rate.pro, s.rate.team].map(|t| t.requests_per_minute),
        [10, 60, 300, 1_000]
    );
    assert_eq!(s.rate.test_key_requests_per_minute, 300);
    assert!(s.redis.is_none());
    assert_eq!((s.ip_guard.threshold, s.ip_guard.window.as_secs(), s.ip_guard.block_for.as_secs()), (50, 300, 900));

    let f = file(
        r#"
[tiers.pro]
requests_per_minute = 500
tokens_per_minute = 200000
[limits]
test_key_requests_per_minute = 3
[security]
failed_auth_threshold = 20
ip_block_secs = 60
client_ip_header = "X-Real-IP"
"#,
    );
    let s = load(
        Some(f.path()),
        &env(&[
            ("LAYERS_REDIS_URL", "redis://cache.internal:6379/2"),
            ("LAYERS_SECURITY__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
        ]),
    )
    .unwrap();
    assert_eq!((s.rate.pro.requests_per_minute, s.rate.pro.tokens_per_minute), (500, Some(200_000)));
    assert_eq!(s.rate.free.requests_per_minute, 10, "other tiers keep their defaults");
    assert_eq!(s.rate.test_key_requests_per_minute, 3);
    let redis = s.redis.unwrap();
    assert_eq!((redis.url.as_str(), redis.prefix.as_str()), ("redis://cache.internal:6379/2", "layers:"));
    assert_eq!((s.ip_guard.threshold, s.ip_guard.block_for.as_secs()), (20, 60));
    let mut h = http_headers("x-real-ip", "203.0.113.4");
    let proxy: std::net::IpAddr = "10.1.1.1".parse().unwrap();
    assert_eq!(s.proxies.client_ip(proxy, &h).to_string(), "203.0.113.4");
    h = http_headers("x-forwarded-for", "203.0.113.4");
    assert_eq!(s.proxies.client_ip(proxy, &h), proxy, "only the configured header is believed");
}

fn http_headers(name: &'static str, value: &'static str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(name, http::HeaderValue::from_static(value));
    h
}

#[test]
fn bad_traffic_settings_are_named() {
    let f = file(
        r#"
[tiers.free]
requests_per_minute = 0
tokens_per_minute = 0
[redis]
url = "http://not-redis"
[security]
failed_auth_threshold = 0
trusted_proxies = ["10.0.0.0/40"]
[limits]
rate_window_ms = 5
"#,
    );
    let got = paths(load(Some(f.path()), &env(&[])).unwrap_err());
    for want in [
        "tiers.free.requests_per_minute",
        "tiers.free.tokens_per_minute",
        "redis.url",
        "security.failed_auth_threshold",
        "security.trusted_proxies",
        "limits.rate_window_ms",
    ] {
        assert!(got.iter().any(|p| p == want), "missing {want} in {got:?}");
    }
    let f = file("[security]\nclient_ip_header = \"x-forwarded-for\"\n");
    assert_eq!(paths(load(Some(f.path()), &env(&[])).unwrap_err()), vec!["security.client_ip_header"]);
}

#[test]
fn long_context_and_cache_write_prices_load_and_half_a_tier_is_refused() {
    let s = load(None, &env(&[("GEMINI_API_KEY", "k"), ("ANTHROPIC_API_KEY", "k")])).unwrap();
    let pro = s.models.iter().find(|m| m.name.as_str() == "google/gemini-2.5-pro").unwrap();
    let long = pro.list_price.long_context.unwrap();
    assert_eq!((long.above_tokens, long.input.micros_per_mtok()), (200_000, 250_000_000));
    let sonnet = s.models.iter().find(|m| m.name.as_str() == "anthropic/claude-sonnet-4.5").unwrap();
    assert_eq!(sonnet.list_price.cache_write_input.micros_per_mtok(), 375_000_000);
    let f = file(
        r#"
[[models]]
name = "sandbox/half"
routes = [{ provider = "sandbox", model = "x" }]
input_per_mtok = 1.0
output_per_mtok = 2.0
context_window = 1000
long_context_above_tokens = 500
"#,
    );
    assert_eq!(paths(load(Some(f.path()), &env(&[])).unwrap_err()), vec!["models.sandbox/half"]);
}

fn production_env() -> BTreeMap<String, String> {
    env(&[
        ("LAYERS_ENV", "production"),
        ("LAYERS_PUBLIC_URL", "https://layers.example"),
        ("LAYERS_DATABASE_URL", "postgres://layers:db-password-x@db/layers"),
        ("LAYERS_KEYS__PEPPER", "0123456789abcdef0123456789abcdef-long-enough"),
        ("LAYERS_EMAIL__SMTP_URL", "smtps://resend:re_secret@smtp.resend.com:465"),
        ("LAYERS_EMAIL__FROM", "Layers <no-reply@layers.example>"),
    ])
}

#[test]
fn sessions_and_email_settings() {
    let s = load(None, &env(&[("LAYERS_SESSIONS__IDLE_HOURS", "2"), ("LAYERS_SESSIONS__ABSOLUTE_DAYS", "1")])).unwrap();
    assert_eq!(s.sessions.idle, std::time::Duration::from_secs(7200));
    assert_eq!(s.sessions.absolute, std::time::Duration::from_secs(86400));
    assert!(s.email.smtp_url.is_none(), "the console mailer by default");
    let bad =
        load(None, &env(&[("LAYERS_SESSIONS__IDLE_HOURS", "0"), ("LAYERS_EMAIL__SMTP_URL", "http://x")])).unwrap_err();
    assert_eq!(paths(bad), vec!["email.smtp_url", "sessions.idle_hours"]);
    let mut prod = production_env();
    prod.insert("LAYERS_EMAIL__SMTP_URL".into(), "smtp://user:pw@smtp.example.com:587".into());
    assert_eq!(paths(load(None, &prod).unwrap_err()), vec!["email.smtp_url"], "no TLS in production");
    prod.insert("LAYERS_EMAIL__SMTP_URL".into(), "smtp://user:pw@smtp.example.com:587?tls=required".into());
    assert!(load(None, &prod).is_ok());
}

#[test]
fn production_refuses_plain_http_providers_except_on_loopback() {
    let f = file(
        "[[providers]]\nname = \"far\"\nkind = \"openai\"\nbase_url = \"http://10.0.0.5/v1\"\n\
         [[providers]]\nname = \"near\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9000/v1\"\n\
         [[providers]]\nname = \"near6\"\nkind = \"openai\"\nbase_url = \"http://[::1]:9000/v1\"\n",
    );
    let got = paths(load(Some(f.path()), &production_env()).unwrap_err());
    assert_eq!(got, vec!["providers.far.base_url"]);
    // Development lets a plain-http upstream through (a local model server, say).
    load(Some(f.path()), &env(&[])).unwrap();
}

#[test]
fn production_refuses_trusting_every_address_as_a_proxy() {
    for net in ["0.0.0.0/0", "::/0"] {
        let f = file(&format!("[security]\ntrusted_proxies = [\"10.0.0.0/8\", \"{net}\"]\n"));
        let got = paths(load(Some(f.path()), &production_env()).unwrap_err());
        assert_eq!(got, vec!["security.trusted_proxies"], "{net}");
        load(Some(f.path()), &env(&[])).unwrap();
    }
}

#[test]
fn syntax_errors_and_wrong_types_do_not_echo_secrets() {
    let f = file("listen = \"127.0.0.1:8080\"\n[keys]\npepper = \"hunter2-pepper-secret-value-long-enough\n");
    let err = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    let f = file("[server]\nmax_connections = \"hunter2-in-the-wrong-place\"\n");
    let err = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("server.max_connections"), "{err}");
}

#[test]
fn urls_with_passwords_are_redacted_in_debug() {
    let mut vars = production_env();
    vars.insert("LAYERS_REDIS_URL".into(), "redis://:redis-password-y@cache:6379/0".into());
    let settings = load(None, &vars).unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains("db-password-x") && !shown.contains("redis-password-y"), "{shown}");
    assert!(shown.contains("postgres://layers:[redacted]@db/layers"), "{shown}");
    let (config, _) = read(None, &vars);
    let shown = format!("{config:?}");
    assert!(!shown.contains("db-password-x") && !shown.contains("redis-password-y"), "{shown}");
}

#[test]
fn production_keeps_metrics_off_the_public_listener_unless_a_token_is_set() {
    use layers_server::api::metrics::MetricsAccess;
    assert!(matches!(load(None, &env(&[])).unwrap().metrics_access, MetricsAccess::Open));
    assert!(matches!(load(None, &production_env()).unwrap().metrics_access, MetricsAccess::Off));
    let mut vars = production_env();
    vars.insert("LAYERS_SERVER__METRICS_TOKEN".into(), "a-long-enough-metrics-token-xyz".into());
    assert!(matches!(load(None, &vars).unwrap().metrics_access, MetricsAccess::Token(_)));
    vars.insert("LAYERS_SERVER__METRICS_TOKEN".into(), "short".into());
    assert_eq!(paths(load(None, &vars).unwrap_err()), vec!["server.metrics_token"]);
    let f = file("[server]\nmetrics_listen = \"127.0.0.1:9090\"\n");
    let s = load(Some(f.path()), &env(&[])).unwrap();
    assert!(matches!(s.metrics_access, MetricsAccess::Off));
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
}

#[test]
fn stripe_settings_come_from_the_environment_with_lists_comma_separated() {
    let s = load(
        None,
        &env(&[
            ("LAYERS_STRIPE__SECRET_KEY", "sk_test_0123456789"),
            ("LAYERS_STRIPE__WEBHOOK_SECRETS", "whsec_new_0123456789abcdef, whsec_old_0123456789abcdef"),
            ("LAYERS_STRIPE__PACKS", "500,2000, 10000"),
            ("LAYERS_STRIPE__PLANS__PRO", "price_pro_123"),
            ("LAYERS_STRIPE__INCLUDED_CREDITS__PRO", "1000"),
            ("LAYERS_STRIPE__AUTO_TOPUP", "false"),
        ]),
    )
    .unwrap();
    let p = s.payments.expect("payments on");
    assert_eq!(p.webhook_secrets.len(), 2);
    assert_eq!(p.packs, vec![500, 2_000, 10_000]);
    assert_eq!(p.plans.len(), 1);
    assert_eq!(p.plans[0].price_id, "price_pro_123");
    assert_eq!(p.plans[0].monthly_credits, 1_000);
    assert!(!p.auto_topup);
    assert_eq!(p.api_base, "https://api.stripe.com");
    // Off unless a secret key is set.
    assert!(load(None, &env(&[])).unwrap().payments.is_none());
}

#[test]
fn stripe_without_a_webhook_secret_or_with_a_test_key_in_production_is_refused() {
    let got = paths(load(None, &env(&[("LAYERS_STRIPE__SECRET_KEY", "sk_test_0123456789")])).unwrap_err());
    assert_eq!(got, vec!["stripe.webhook_secrets"], "no way to verify a webhook: refused everywhere");
    let mut prod = production_env();
    prod.insert("LAYERS_STRIPE__SECRET_KEY".into(), "sk_test_0123456789".into());
    prod.insert("LAYERS_STRIPE__WEBHOOK_SECRETS".into(), "whsec_0123456789abcdef".into());
    prod.insert("LAYERS_STRIPE__API_BASE".into(), "http://127.0.0.1:9999".into());
    let got = paths(load(None, &prod).unwrap_err());
    assert_eq!(got, vec!["stripe.secret_key", "stripe.api_base"]);
    let got = paths(load(None, &env(&[("LAYERS_STRIPE__WEBHOOK_SECRETS", "whsec_0123456789abcdef")])).unwrap_err());
    assert_eq!(got, vec!["stripe.secret_key"], "a webhook secret without a key is a half-configured Stripe");
    let f = file("[stripe]\nsecret_key = \"sk_test_1\"\nwebhook_secrets = [\"whsec_0123456789abcdef\"]\nplans = { pro = \"prod_123\" }\npacks = [10]\n");
    let got = paths(load(Some(f.path()), &env(&[])).unwrap_err());
    assert_eq!(got, vec!["stripe.packs", "stripe.plans.pro"]);
}

#[test]
fn the_disclosure_contact_is_a_mailto_or_https_address() {
    let ok = load(None, &env(&[("LAYERS_SECURITY__DISCLOSURE_CONTACT", "mailto:security@example.com")])).unwrap();
    assert_eq!(ok.disclosure_contact.as_deref(), Some("mailto:security@example.com"));
    for bad in ["security@example.com", "http://example.com/report", "javascript:alert(1)"] {
        let got = paths(load(None, &env(&[("LAYERS_SECURITY__DISCLOSURE_CONTACT", bad)])).unwrap_err());
        assert_eq!(got, vec!["security.disclosure_contact"], "{bad}");
    }
}
