//! The validated configuration: what `layers` runs with, typed, defaulted and complete
//! (produced by `validate.rs` from a `Config`). Invariant: nothing here can be invalid, and no
//! `Debug` of it shows a secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use layers_core::billing::BillingSettings;
use layers_core::ipguard::IpGuardSettings;
use layers_core::ratelimit::RateSettings;
use layers_core::redis_conn::RedisSettings;
use layers_domain::limits::RequestLimits;
use layers_domain::{Markup, ModelSpec};
use layers_providers::ProviderSettings;
use layers_server::api::metrics::MetricsAccess;
use layers_server::middleware::client_ip::TrustedProxies;
use layers_store::Backend;
use secrecy::SecretString;

/// A complete, valid configuration.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub production: bool,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub allowed_origins: Vec<String>,
    pub database: DatabaseSettings,
    pub pepper: PepperSource,
    /// Enabled providers.
    pub providers: Vec<ProviderSettings>,
    /// Providers left out, with the reason (logged at start-up).
    pub disabled_providers: Vec<(String, String)>,
    pub models: Vec<ModelSpec>,
    pub markup: Markup,
    pub billing: BillingSettings,
    pub limits: RequestLimits,
    pub rate: RateSettings,
    pub redis: Option<RedisSettings>,
    pub ip_guard: IpGuardSettings,
    pub routing: layers_core::chat::routing::RoutingSettings,
    pub test_keys: layers_core::chat::test_keys::TestKeySettings,
    pub proxies: TrustedProxies,
    pub key_cache_capacity: usize,
    pub key_cache_ttl: Duration,
    pub invalidation_poll: Duration,
    pub log_json: bool,
    pub log_level: String,
    pub shutdown_timeout: Duration,
    pub edge: layers_server::connections::EdgeSettings,
    pub upstream: layers_providers::UpstreamLimits,
    /// A separate listener for `/metrics` only.
    pub metrics_listen: Option<SocketAddr>,
    /// Who may read `/metrics` on the public listener.
    pub metrics_access: MetricsAccess,
    /// Where the accounts' e-mails go.
    pub email: EmailSettings,
    pub sessions: layers_domain::identity::session::SessionPolicy,
    /// "Continue with Google", when configured.
    pub oidc: Option<layers_core::identity::oidc::OidcSettings>,
    /// Where alert webhooks may go.
    pub webhooks: layers_core::alerts::WebhookPolicy,
    /// How far the node's clock runs ahead of the system's (tests of the binary only).
    pub clock_ahead: Duration,
    /// `testing.record_responses_dir` (never in production).
    pub record_responses: Option<std::path::PathBuf>,
    /// Card payments through Stripe, when `[stripe]` is configured.
    pub payments: Option<layers_core::payments::PaymentSettings>,
    /// The anomaly rules' thresholds and the operator's webhook.
    pub anomaly: layers_core::alerts::AnomalySettings,
    /// How long usage rows are kept (`privacy.usage_retention_days`).
    pub usage_retention: Option<Duration>,
    /// Published at `/.well-known/security.txt` (`security.disclosure_contact`).
    pub disclosure_contact: Option<String>,
}

#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub migrate_url: String,
    pub app_role: Option<String>,
    pub max_connections: u32,
    pub auto_migrate: bool,
    pub backend: Backend,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &super::secret::redact_url(&self.url))
            .field("migrate_url", &super::secret::redact_url(&self.migrate_url))
            .field("app_role", &self.app_role)
            .field("max_connections", &self.max_connections)
            .field("auto_migrate", &self.auto_migrate)
            .field("backend", &self.backend)
            .finish()
    }
}

/// Where the key pepper comes from.
#[derive(Debug)]
pub enum PepperSource {
    Configured {
        current: i32,
        peppers: BTreeMap<i32, SecretString>,
    },
    /// Development only: generated once and kept in this file.
    DevFile {
        path: PathBuf,
        current: i32,
        older: BTreeMap<i32, SecretString>,
    },
}

/// `[email]`, checked.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// `None`: the console mailer (refused in production).
    pub smtp_url: Option<super::Secret>,
    pub from: String,
}
