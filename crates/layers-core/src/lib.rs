//! The services of Layers. They use the domain, the store traits and the providers; they know
//! nothing of HTTP servers (no axum here), so handlers stay thin and every rule is testable.
//!
//! Components:
//! - [`auth`]: API key authentication with its cache and peppers.
//! - [`keys`], [`accounts`]: creating and changing keys, accounts and credits.
//! - [`catalogue`]: models, routes and prices as this deployment serves them.
//! - [`chat`]: the chat completion pipeline, streaming and metering included.
//! - [`billing`]: credit holds against per-node leases, settlement, lease upkeep and reaper.
//! - [`ratelimit`]: per-key request and token limits, global over Redis when configured.
//! - [`ipguard`]: blocking IPs after repeated failed authentication.
//! - [`broadcast`], [`redis_conn`]: instant invalidation across nodes, and the Redis connection
//!   with its fallback.
//! - [`last_used`], [`invalidation`]: background work off the hot path.
//! - [`identity`]: sign-up, login, sessions, password reset and CSRF tokens for the pages.
//! - [`audit`]: audit events. [`tasks`]: where background tasks are spawned and awaited.

pub mod access;
pub mod accounts;
pub mod admission;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod broadcast;
pub mod catalogue;
pub mod chat;
pub mod clock;
pub mod codes;
pub mod dashboard;
pub mod erasure;
pub mod error;
pub mod failure;
pub mod histogram;
pub mod identity;
pub mod incident;
pub mod invalidation;
pub mod ipguard;
pub mod keys;
pub mod last_used;
pub mod media;
pub mod messages_dialect;
pub mod payments;
pub mod ratelimit;
pub mod readiness;
pub mod records;
pub mod redact;
pub mod redis_conn;
pub mod responses_dialect;
pub mod retention;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use layers_domain::limits::RequestLimits;
use layers_domain::{Markup, ModelSpec};
use layers_providers::{ProviderSettings, Providers};
use layers_store::Store;

use crate::accounts::AccountService;
use crate::audit::Audit;
use crate::auth::cache::KeyCache;
use crate::auth::pepper::Peppers;
use crate::auth::Authenticator;
use crate::billing::{Billing, BillingSettings};
use crate::broadcast::{BroadcastStats, Broadcaster};
use crate::catalogue::Catalogue;
use crate::chat::routing::{Router, RoutingSettings};
use crate::chat::{ChatParts, ChatService};
use crate::clock::Clock;
use crate::ipguard::{IpGuard, IpGuardSettings};
use crate::keys::KeyService;
use crate::last_used::LastUsed;
use crate::ratelimit::{RateLimiter, RateSettings};
use crate::redis_conn::{Redis, RedisError, RedisSettings};
use crate::tasks::Tasks;

pub use error::{ServiceError, ServiceResult};

/// Everything the services need, already validated by the configuration loader.
#[derive(Debug)]
pub struct CoreSettings {
    pub peppers: Peppers,
    /// Enabled providers only.
    pub providers: Vec<ProviderSettings>,
    pub models: Vec<ModelSpec>,
    pub markup: Markup,
    pub limits: RequestLimits,
    pub key_cache_capacity: usize,
    pub key_cache_ttl: Duration,
    pub invalidation_poll: Duration,
    pub billing: BillingSettings,
    pub rate: RateSettings,
    pub ip_guard: IpGuardSettings,
    pub redis: Option<RedisSettings>,
    pub routing: RoutingSettings,
    pub test_keys: crate::chat::test_keys::TestKeySettings,
    /// What upstream calls may hold in memory at once on this node.
    pub upstream: layers_providers::UpstreamLimits,
    /// Accounts: links, session lifetimes, login throttling.
    pub identity: identity::IdentitySettings,
    /// Where the accounts' e-mails go (SMTP, or the console in development).
    pub mail: Arc<dyn identity::mailer::Transport>,
    /// Where alert webhooks may go.
    pub webhooks: alerts::WebhookPolicy,
    /// How far this node's clock runs ahead of the system's (zero but in tests).
    pub clock_ahead: Duration,
    /// Stripe, when card payments are on.
    pub payments: Option<payments::PaymentSettings>,
    /// The anomaly rules' thresholds and the operator's webhook.
    pub anomaly: alerts::AnomalySettings,
    /// How long usage rows are kept (`None`: for ever).
    pub usage_retention: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Providers(#[from] layers_providers::adapter::BuildError),
    #[error("the Redis settings are invalid")]
    Redis(#[from] RedisError),
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
}

/// The running services of one node.
#[derive(Debug)]
pub struct Core {
    /// Only the services reach the store: the HTTP surface goes through them.
    store: Arc<dyn Store>,
    pub readiness: readiness::Readiness,
    /// The time every service reads; tests move it forward instead of sleeping.
    pub clock: Clock,
    pub auth: Authenticator,
    pub keys: KeyService,
    pub accounts: AccountService,
    pub identity: identity::IdentityService,
    pub dashboard: dashboard::DashboardService,
    pub alerts: Arc<alerts::AlertService>,
    /// Card payments through Stripe (`None` when not configured).
    pub payments: Option<Arc<payments::PaymentService>>,
    pub chat: ChatService,
    pub catalogue: Arc<Catalogue>,
    pub billing: Billing,
    pub limiter: RateLimiter,
    pub ip_guard: Arc<IpGuard>,
    pub redis: Option<Redis>,
    /// Notices received from other nodes over Redis.
    pub notices: Arc<BroadcastStats>,
    tasks: Tasks,
}

impl Core {
    /// Builds the services and starts their background tasks.
    pub async fn start(settings: CoreSettings, store: Arc<dyn Store>) -> Result<Core, CoreError> {
        let tasks = Tasks::new();
        let clock = Clock::system();
        clock.advance(settings.clock_ahead);
        let redis = match settings.redis {
            Some(r) => Some(Redis::connect(r, &tasks).await?),
            None => None,
        };
        let providers = Providers::build(&settings.providers, settings.upstream)?;
        let catalogue =
            Arc::new(Catalogue::new(settings.models, settings.markup, |name| providers.get(name).is_some()));
        let identity_keys = identity::IdentityKeys {
            csrf: settings.peppers.subkey("csrf"),
            totp: settings
                .peppers
                .versions()
                .filter_map(|v| Some((v, settings.peppers.subkey_of(v, "totp-secrets")?)))
                .collect(),
            totp_current: settings.peppers.current_version(),
        };
        let webhook_keys: std::collections::BTreeMap<i32, [u8; 32]> = settings
            .peppers
            .versions()
            .filter_map(|v| Some((v, settings.peppers.subkey_of(v, "webhook-secrets")?)))
            .collect();
        let webhook_secrets = identity::two_factor::SecretBox::new(&webhook_keys, settings.peppers.current_version());
        let peppers = Arc::new(settings.peppers);
        let cache = Arc::new(KeyCache::new(settings.key_cache_capacity, settings.key_cache_ttl));
        let broadcaster = Broadcaster::new(redis.clone(), Some(cache.clone()));
        let last_used = Arc::new(LastUsed::new());
        let audit = Audit::new(store.clone());
        let ip_guard = Arc::new(IpGuard::new(
            settings.ip_guard,
            redis.clone(),
            audit.clone(),
            broadcaster.clone(),
            &tasks,
            &clock,
        ));
        let dashboard = dashboard::DashboardService::new(
            store.clone(),
            clock.clone(),
            settings.rate.clone(),
            settings.billing.tier_caps,
        );
        let limiter = RateLimiter::new(settings.rate, redis.clone(), audit.clone(), &tasks, &clock);
        let notices = Arc::new(BroadcastStats::default());
        let bytes_per_token = settings.billing.prompt_bytes_per_token;
        let billing = Billing::start(store.clone(), settings.billing, broadcaster.clone(), &tasks, clock.clone()).await;
        if let Some(redis) = &redis {
            let followers =
                broadcast::Followers { cache: cache.clone(), guard: ip_guard.clone(), billing: billing.clone() };
            broadcast::spawn_subscriber(redis.clone(), followers, notices.clone(), &tasks);
        }
        let mailer = identity::mailer::Mailer::start(settings.mail, &tasks);
        let alerts = Arc::new(alerts::AlertService::new(
            store.clone(),
            clock.clone(),
            mailer.clone(),
            audit.clone(),
            webhook_secrets,
            alerts::AlertReach {
                webhooks: settings.webhooks,
                public_url: settings.identity.public_url.clone(),
                anomaly: settings.anomaly,
            },
            tasks.clone(),
        ));
        let payments = match settings.payments {
            Some(p) => {
                let parts = payments::PaymentParts {
                    store: store.clone(),
                    audit: audit.clone(),
                    broadcaster: broadcaster.clone(),
                    billing: Some(billing.clone()),
                    mailer: mailer.clone(),
                    clock: clock.clone(),
                    anomalies: Some(alerts.clone()),
                };
                let service = Arc::new(payments::PaymentService::new(parts, p).map_err(CoreError::Http)?);
                payments::jobs::spawn(service.clone(), &tasks);
                Some(service)
            }
            None => None,
        };
        alerts::spawn(alerts.clone(), payments.clone(), billing.clone(), &tasks);
        last_used.spawn_flusher(store.clone(), &tasks, Duration::from_secs(30));
        if let Some(keep) = settings.usage_retention {
            retention::spawn(store.clone(), clock.clone(), keep, &tasks);
        }
        invalidation::spawn_follower(store.clone(), cache.clone(), billing.clone(), &tasks, settings.invalidation_poll);

        Ok(Core {
            auth: Authenticator::new(store.clone(), peppers.clone(), cache.clone(), last_used, clock.clone()),
            keys: KeyService::new(store.clone(), peppers, cache, audit.clone(), broadcaster.clone(), clock.clone())
                .with_anomalies(alerts.clone()),
            identity: identity::IdentityService::new(
                store.clone(),
                mailer,
                audit.clone(),
                clock.clone(),
                settings.identity,
                identity_keys,
                tasks.clone(),
            ),
            accounts: AccountService::new(store.clone(), audit, broadcaster),
            chat: ChatService::new(ChatParts {
                catalogue: catalogue.clone(),
                providers,
                limits: settings.limits,
                billing: billing.clone(),
                limiter: limiter.clone(),
                router: Router::new(settings.routing, clock.clone()),
                tasks: tasks.clone(),
                bytes_per_token,
                clock: clock.clone(),
            })
            .with_test_keys(settings.test_keys, redis.clone(), clock.clone()),
            catalogue,
            dashboard,
            alerts,
            payments,
            billing,
            limiter,
            ip_guard,
            redis,
            notices,
            readiness: readiness::Readiness::new(store.clone()),
            clock,
            store,
            tasks,
        })
    }

    /// Prunes usage rows older than `keep` now (the retention job does it hourly).
    pub async fn prune_usage(&self, keep: Duration) -> ServiceResult<u64> {
        retention::prune(self.store.as_ref(), &self.clock, keep).await
    }

    /// Closes the store's connections; call last, after [`Core::shutdown`].
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Stops background work after flushing what it buffered. Call after the server stopped
    /// accepting requests and in-flight requests have ended.
    pub async fn shutdown(&self) {
        // Request work (drains of streams whose clients left) ends first, within the flush
        // deadline; the settlement writer drains next; then the leases' unspent credit goes back.
        self.tasks.shutdown(self.billing.shutdown_deadline()).await;
        self.billing.release_all().await;
    }
}
