//! Configuration: `layers.toml` overlaid by `LAYERS_*` variables, checked once at start-up.
//! Invariant: every problem is reported with its setting path, all at once; a loaded
//! [`Settings`] is valid, so nothing downstream re-checks it.

mod anomaly;
mod catalogue;
mod env;
pub mod schema;
mod secret;
mod settings;
mod stripe;
mod traffic;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use self::secret::Secret;
pub use self::settings::{DatabaseSettings, EmailSettings, PepperSource, Settings};

/// The raw configuration, as written.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Config {
    pub listen: Option<String>,
    pub env: Option<String>,
    pub public_url: Option<String>,
    #[schema(value_type = Option<String>)]
    pub data_dir: Option<PathBuf>,
    pub allowed_origins: Vec<String>,
    pub database: DatabaseConfig,
    pub keys: KeysConfig,
    pub limits: LimitsConfig,
    pub billing: BillingConfig,
    pub tiers: TiersConfig,
    pub redis: RedisConfig,
    pub routing: RoutingConfig,
    pub test_keys: TestKeysConfig,
    pub security: SecurityConfig,
    pub log: LogConfig,
    pub server: ServerConfig,
    pub email: EmailConfig,
    pub sessions: SessionsConfig,
    pub alerts: AlertsConfig,
    pub stripe: stripe::StripeConfig,
    pub anomaly: anomaly::AnomalyConfig,
    pub privacy: PrivacyConfig,
    pub testing: TestingConfig,
    pub oidc: OidcConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://./data/layers.db` (default) or `postgres://…`.
    #[serde(serialize_with = "secret::serialize_url")]
    pub url: Option<String>,
    /// Owner connection for `layers migrate` (PostgreSQL); defaults to `url`.
    #[serde(serialize_with = "secret::serialize_url")]
    pub migrate_url: Option<String>,
    /// The role the server switches to on PostgreSQL (default `layers_app`; "" keeps the login role).
    pub app_role: Option<String>,
    pub max_connections: Option<u32>,
    /// Apply migrations at start-up (default: on for SQLite outside production, else off).
    pub auto_migrate: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Pepper of the current version (≥ 32 bytes). Outside production a generated one is kept in
    /// `data_dir/pepper` when none is set.
    pub pepper: Option<Secret>,
    /// Version of `pepper`; raise it when rotating (default 1).
    pub pepper_version: Option<i32>,
    /// Earlier peppers by version, so keys issued under them keep working.
    #[serde(default)]
    pub old_peppers: BTreeMap<String, Secret>,
    pub cache_capacity: Option<usize>,
    pub cache_ttl_secs: Option<u64>,
    /// How often each node polls the revocation feed (10 to 500 ms, default 250).
    pub invalidation_poll_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_bytes: Option<usize>,
    /// Upstream data (bodies, partly read events, fetched images) buffered at once on a node,
    /// in MiB (default 256); past it calls fail with 503 `overloaded`.
    pub upstream_buffer_mb: Option<usize>,
    /// Images fetched by URL at once on a node (default 32).
    pub image_fetches: Option<usize>,
    pub max_messages: Option<usize>,
    pub max_message_chars: Option<usize>,
    /// Requests per minute of any test key, whatever the tier (default 300); an operator's
    /// lower per-account limit still applies.
    pub test_key_requests_per_minute: Option<u32>,
    /// The window of the per-minute limits, in ms (default 60000). Shorter only to test.
    pub rate_window_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// Charged price = list price × (1 + markup_percent / 100).
    pub markup_percent: Option<f64>,
    /// How long a node's credit lease lives without renewal (a dead node's credit comes back
    /// after this). Default 30.
    pub lease_ttl_secs: Option<u64>,
    /// Unused lease credit goes back after this long without requests. Default 2000.
    pub idle_release_ms: Option<u64>,
    /// How often every node reaps expired leases. Default 10.
    pub reaper_interval_secs: Option<u64>,
    /// Largest block of credit one node leases at once, in credits. Default 100.
    pub max_lease_credits: Option<f64>,
    /// Lower the forwarded max_tokens to what is covered: `never`, `implicit` (only when the
    /// client set none; default) or `always`.
    pub lower_max_tokens: Option<String>,
    /// Bytes of prompt text counted as one token in a hold. Default 1 (an exact upper bound
    /// for every provider's tokenizer); 2 to 4 makes holds smaller, and a charge can then
    /// exceed its hold (paid from the lease within the caps, the rest a recorded shortfall).
    pub prompt_bytes_per_token: Option<u32>,
    /// Longest a billing database call may take before it counts as failed. Default 2000.
    pub db_timeout_ms: Option<u64>,
    /// Longest a request waits for other leases of its account to give back credit. Default 2000.
    pub reclaim_wait_ms: Option<u64>,
    /// Settlements waiting to be written beyond which new requests wait. Default 20000.
    pub max_settlement_backlog: Option<u64>,
    /// How long a request waits for that backlog to fall before a 503. Default 2000.
    pub backlog_wait_ms: Option<u64>,
    /// How long a shutdown retries settlements before journaling them for the next start
    /// (in `data_dir/settlements.journal`). Default 10.
    pub shutdown_flush_secs: Option<u64>,
}

/// Per-tier settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    pub free: Option<TierConfig>,
    pub starter: Option<TierConfig>,
    pub pro: Option<TierConfig>,
    pub team: Option<TierConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Largest estimated cost of one request, in credits (default 100 = US$1.00).
    pub max_credits_per_request: Option<f64>,
    /// Largest spend in any rolling hour, in credits (default 1,000 = US$10.00).
    pub max_credits_per_hour: Option<f64>,
    /// Requests per minute per key (defaults: free 10, starter 60, pro 300, team 1000).
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt + completion) per minute per key; none by default.
    pub tokens_per_minute: Option<u64>,
}

/// What test keys may reach (SPEC §3.1).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestKeysConfig {
    /// Let test keys call the models' real routes instead of the sandbox (default false).
    pub real_routes: Option<bool>,
    /// With real routes: requests per account per UTC day, per node (default 100).
    pub daily_requests: Option<u32>,
}

/// Retries, fall-over and circuit breaking of upstream routes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Attempts on one route before the next route is tried (default 2: one retry).
    pub attempts_per_route: Option<u32>,
    /// First retry backoff in ms, doubled each retry, with full jitter (default 100).
    pub backoff_base_ms: Option<u64>,
    /// Longest backoff, and the longest upstream `retry-after` waited for (default 2000).
    pub backoff_max_ms: Option<u64>,
    /// Failures within 10 s, at least as many as the successes, that take a route out of
    /// rotation (default 5).
    pub breaker_failures: Option<u32>,
    /// How long a failing route stays out before it is probed again, in ms (default 30000).
    pub breaker_cooldown_ms: Option<u64>,
}

/// Redis: global rate limits, instant revocation across nodes, shared IP blocks.
#[derive(Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0` (or `rediss://`); unset means in-process state only.
    #[serde(serialize_with = "secret::serialize_url")]
    pub url: Option<String>,
    /// Prefix of every key and channel, so deployments can share a Redis (default `layers:`).
    pub prefix: Option<String>,
    /// Longest a request waits on Redis before limiting locally (default 100).
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = |u: &Option<String>| u.as_deref().map(secret::redact_url);
        f.debug_struct("DatabaseConfig")
            .field("url", &url(&self.url))
            .field("migrate_url", &url(&self.migrate_url))
            .field("app_role", &self.app_role)
            .field("max_connections", &self.max_connections)
            .field("auto_migrate", &self.auto_migrate)
            .finish()
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(secret::redact_url))
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Failed-authentication blocking and how the client's IP is found (SPEC §8.4).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Failed authentications from one IP within the window that block it (default 50).
    pub failed_auth_threshold: Option<u32>,
    /// The window, in seconds (default 300).
    pub failed_auth_window_secs: Option<u64>,
    /// How long a blocked IP stays blocked, in seconds (default 900).
    pub ip_block_secs: Option<u64>,
    /// Proxies (IPs or CIDR ranges) whose `client_ip_header` is believed. Empty: the socket's peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies put the client's IP in (default `x-forwarded-for`).
    pub client_ip_header: Option<String>,
    /// Where vulnerabilities are reported (`mailto:security@example.com` or an https URL),
    /// published at `/.well-known/security.txt` (RFC 9116); unset: not published.
    pub disclosure_contact: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (default: json in production).
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `layers=debug,info`.
    pub level: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// How long a graceful shutdown waits for in-flight requests (default 30).
    pub shutdown_timeout_secs: Option<u64>,
    /// A client must send a request's head within this (default 10000).
    pub header_read_timeout_ms: Option<u64>,
    /// An idle keep-alive connection is closed after this (default 75).
    pub idle_timeout_secs: Option<u64>,
    /// A request body must arrive whole within this, else 408 (default 30).
    pub body_read_timeout_secs: Option<u64>,
    /// Open client connections at most (default 10000, lowered to the descriptor limit).
    pub max_connections: Option<usize>,
    /// Requests in flight at most; past it, 503 `overloaded` (default 4096).
    pub max_in_flight: Option<usize>,
    /// Serve `/metrics` on this separate address (e.g. `127.0.0.1:9090`) instead of the public one.
    pub metrics_listen: Option<String>,
    /// Serve `/metrics` on the public listener to `Authorization: Bearer <token>` only.
    pub metrics_token: Option<Secret>,
}

/// `[email]`: how the accounts' messages are delivered.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtps://user:password@smtp.example.com:465` (or `smtp://…?tls=required`); unset: the
    /// console mailer, which writes each message to the log (development only).
    pub smtp_url: Option<Secret>,
    /// The sender, e.g. `Layers <no-reply@example.com>` (default `Layers <no-reply@localhost>`).
    pub from: Option<String>,
}

/// `[oidc]`: "Continue with Google" (or another OpenID Connect issuer). Off until `client_id`
/// is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Default `https://accounts.google.com`; a plain-HTTP loopback issuer is accepted outside
    /// production (tests run a local one).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
}

/// `[alerts]`: where the alerts people configure may be delivered.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Let alert webhooks use plain http and private addresses (local testing only; production
    /// refuses it). Default false.
    pub allow_private_webhooks: Option<bool>,
}

/// `[privacy]`: data minimisation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Delete usage rows (each request's model, tokens, latency, charge) older than this many
    /// days; the ledger, per-day spend and the audit trail are kept. Unset: kept for ever.
    pub usage_retention_days: Option<u32>,
}

/// `[testing]`: knobs for tests of a running binary (production refuses every one).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// Run this node's clock this many seconds ahead of the system's (calendar limits, key
    /// expiry and rotation overlaps follow it), so a browser test can reach "tomorrow".
    pub clock_ahead_secs: Option<u64>,
    /// Record every response into a file in this directory (the test suite's OpenAPI check).
    #[schema(value_type = Option<String>)]
    pub record_responses_dir: Option<PathBuf>,
}

/// `[sessions]`: how long a dashboard login lasts.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Hours without a request before a session ends (default 24).
    pub idle_hours: Option<u64>,
    /// Days after login when a session ends however active (default 7).
    pub absolute_days: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// `openai` | `anthropic` | `gemini` | `sandbox`.
    pub kind: String,
    pub base_url: Option<String>,
    /// Environment variable holding the provider's API key.
    pub api_key_env: Option<String>,
    /// File holding the provider's API key (container secrets).
    #[schema(value_type = Option<String>)]
    pub api_key_file: Option<PathBuf>,
    pub enabled: Option<bool>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    /// Fetch image URLs that resolve to private addresses (for local test servers only;
    /// refused in production). Default false.
    pub allow_private_image_urls: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    /// `chat` (default), `embedding` or `image`.
    pub kind: Option<String>,
    pub routes: Vec<RouteConfig>,
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    pub cached_input_per_mtok: Option<f64>,
    /// Prompt tokens written to the provider's cache (Anthropic: 1.25 × input); default input.
    pub cache_write_per_mtok: Option<f64>,
    pub per_image: Option<f64>,
    /// Prompts longer than this many tokens are priced at the `long_context_*` rates throughout.
    pub long_context_above_tokens: Option<u32>,
    pub long_context_input_per_mtok: Option<f64>,
    pub long_context_output_per_mtok: Option<f64>,
    pub long_context_cached_input_per_mtok: Option<f64>,
    pub long_context_cache_write_per_mtok: Option<f64>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    /// Most tokens one input image may cost (default: the provider's most).
    pub image_tokens: Option<u32>,
    /// Most tokens one input document (PDF…) may cost (default: the context window).
    pub file_tokens: Option<u32>,
    /// US$ per request that searches the web, by search context size.
    pub search_fee_low: Option<f64>,
    pub search_fee_medium: Option<f64>,
    pub search_fee_high: Option<f64>,
    /// The search context size the provider uses when the request names none (default `low`).
    pub search_default: Option<String>,
    /// The model searches unless told not to (Perplexity).
    #[serde(default)]
    pub searches_by_default: bool,
    /// Image generation prices by quality and size; `per_image` covers the rest.
    #[serde(default)]
    pub image_prices: Vec<ImagePriceConfig>,
    /// The quality and size the provider makes when a request names none.
    pub image_quality: Option<String>,
    pub image_size: Option<String>,
    /// Explicitly free (no price needed).
    #[serde(default)]
    pub free: bool,
    pub enabled: Option<bool>,
    pub created: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePriceConfig {
    pub quality: String,
    pub size: String,
    pub per_image: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub provider: String,
    pub model: String,
}

/// One thing wrong with the configuration, at a setting path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: &str, message: impl Into<String>) -> Problem {
        Problem { path: path.to_owned(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates: the file (if any), then the environment overlay, then every check.
pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Settings, ConfigErrors> {
    let (config, mut problems) = read(file, env);
    let settings = validate::validate(config, env, &mut problems);
    match settings {
        Some(s) if problems.is_empty() => Ok(s),
        _ => Err(ConfigErrors(problems)),
    }
}

/// Reads the configuration without validating it (for `check-config --print`).
pub fn read(file: Option<&Path>, env: &BTreeMap<String, String>) -> (Config, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut table = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match toml::from_str::<toml::Table>(&text) {
                Ok(t) => t,
                Err(err) => {
                    problems.push(Problem::new(&path.display().to_string(), syntax_error(&text, &err)));
                    toml::Table::new()
                }
            },
            Err(err) => {
                problems.push(Problem::new(&path.display().to_string(), format!("cannot read the file: {err}")));
                toml::Table::new()
            }
        },
        None => toml::Table::new(),
    };
    env::overlay(&mut table, env, &mut problems);
    let config = from_table(table, &mut problems);
    (config, problems)
}

/// Where a TOML syntax error is and what is wrong, without the offending line: it may hold a
/// secret (a pepper, a password in a URL).
fn syntax_error(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("invalid TOML at line {line}, column {column}: {}", err.message().trim())
        }
        None => format!("invalid TOML: {}", err.message().trim()),
    }
}

/// A deserialisation error with the quoted values taken out (`invalid type: string "…"`), so
/// a secret put under the wrong setting is not printed.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for ch in message.chars() {
        if ch == '"' {
            if !inside {
                out.push_str("\"[hidden]\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(ch);
        }
    }
    out
}

/// Deserialises each top-level setting on its own, so one bad section does not hide the others.
fn from_table(mut t: toml::Table, problems: &mut Vec<Problem>) -> Config {
    let mut c = Config::default();
    take(&mut t, "listen", &mut c.listen, problems);
    take(&mut t, "env", &mut c.env, problems);
    take(&mut t, "public_url", &mut c.public_url, problems);
    take(&mut t, "data_dir", &mut c.data_dir, problems);
    take(&mut t, "allowed_origins", &mut c.allowed_origins, problems);
    take(&mut t, "database", &mut c.database, problems);
    take(&mut t, "keys", &mut c.keys, problems);
    take(&mut t, "limits", &mut c.limits, problems);
    take(&mut t, "billing", &mut c.billing, problems);
    take(&mut t, "tiers", &mut c.tiers, problems);
    take(&mut t, "redis", &mut c.redis, problems);
    take(&mut t, "routing", &mut c.routing, problems);
    take(&mut t, "test_keys", &mut c.test_keys, problems);
    take(&mut t, "security", &mut c.security, problems);
    take(&mut t, "log", &mut c.log, problems);
    take(&mut t, "server", &mut c.server, problems);
    take(&mut t, "email", &mut c.email, problems);
    take(&mut t, "sessions", &mut c.sessions, problems);
    take(&mut t, "alerts", &mut c.alerts, problems);
    take(&mut t, "stripe", &mut c.stripe, problems);
    take(&mut t, "anomaly", &mut c.anomaly, problems);
    take(&mut t, "privacy", &mut c.privacy, problems);
    take(&mut t, "testing", &mut c.testing, problems);
    take(&mut t, "oidc", &mut c.oidc, problems);
    take(&mut t, "providers", &mut c.providers, problems);
    take(&mut t, "models", &mut c.models, problems);
    for unknown in t.keys() {
        problems.push(Problem::new(unknown, "unknown setting"));
    }
    c
}

fn take<T: DeserializeOwned>(t: &mut toml::Table, key: &str, slot: &mut T, problems: &mut Vec<Problem>) {
    let Some(value) = t.remove(key) else { return };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => *slot = v,
        Err(err) => {
            let sub = err.path().to_string();
            let path = match sub.as_str() {
                "." => key.to_owned(),
                s if s.starts_with('[') => format!("{key}{s}"),
                s => format!("{key}.{s}"),
            };
            problems.push(Problem::new(&path, without_values(&err.into_inner().to_string())));
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
