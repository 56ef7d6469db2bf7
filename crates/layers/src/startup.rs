//! Start-up and shutdown: open the store, build the services, serve, and drain on SIGTERM.
//! Invariant: `serve` refuses an unmigrated database and, on PostgreSQL, a role that could
//! bypass row-level security in production; shutdown flushes buffered writes before returning.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use layers_core::auth::pepper::Peppers;
use layers_core::identity::mailer::{ConsoleTransport, Transport};
use layers_core::identity::smtp::SmtpTransport;
use layers_core::identity::IdentitySettings;
use layers_core::{Core, CoreSettings};
use layers_domain::base62;
use layers_server::middleware::cors::CorsPolicy;
use layers_server::AppState;
use layers_store::postgres::PgStore;
use layers_store::{Backend, ConnectOptions, Store};
use rand::TryRngCore;
use secrecy::SecretString;

use crate::config::{DatabaseSettings, EmailSettings, PepperSource, Settings};

/// Everything `serve` needs, ready to accept connections.
pub struct Prepared {
    pub core: Arc<Core>,
    /// The store the services use, for operator commands and tests; the HTTP surface has none.
    pub store: Arc<dyn Store>,
    pub state: AppState,
    /// The private `/metrics` listener, when configured, and its address.
    metrics: Option<tokio::net::TcpListener>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    shutdown_timeout: Duration,
}

/// Opens the store and builds the services from valid settings.
pub async fn prepare(settings: Settings) -> anyhow::Result<Prepared> {
    let store = open_store(&settings.database, settings.production).await?;
    let peppers = load_peppers(&settings.pepper)?;
    if settings.production && settings.redis.is_none() {
        tracing::warn!(
            "no Redis configured: rate limits and IP blocks are per node; with more than one node set LAYERS_REDIS_URL"
        );
    }
    for (name, why) in &settings.disabled_providers {
        tracing::info!(provider = %name, reason = %why, "provider disabled");
    }
    let handle = store.clone();
    let mail = mail_transport(&settings.email)?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| development_url(settings.listen));
    let mut identity = IdentitySettings::new(&public_url);
    identity.sessions = settings.sessions;
    identity.oidc = settings.oidc.clone();
    let core = Core::start(
        CoreSettings {
            peppers,
            providers: settings.providers,
            models: settings.models,
            markup: settings.markup,
            limits: settings.limits,
            key_cache_capacity: settings.key_cache_capacity,
            key_cache_ttl: settings.key_cache_ttl,
            invalidation_poll: settings.invalidation_poll,
            billing: settings.billing,
            rate: settings.rate,
            ip_guard: settings.ip_guard,
            redis: settings.redis,
            routing: settings.routing,
            test_keys: settings.test_keys,
            upstream: settings.upstream,
            identity,
            mail,
            webhooks: settings.webhooks,
            clock_ahead: settings.clock_ahead,
            anomaly: settings.anomaly,
            usage_retention: settings.usage_retention,
            payments: settings.payments.map(|mut p| {
                p.public_url = public_url.trim_end_matches('/').to_owned();
                p
            }),
        },
        store,
    )
    .await?;
    let core = Arc::new(core);
    let mut edge = settings.edge;
    edge.max_connections = fit_connection_cap(edge.max_connections);
    let state = AppState::new(core.clone(), CorsPolicy::new(settings.allowed_origins), settings.proxies, edge)
        .with_metrics_access(settings.metrics_access)
        .with_disclosure_contact(settings.disclosure_contact.clone())
        .with_response_recorder(settings.record_responses.as_deref())
        .context("cannot write to testing.record_responses_dir")?;
    let metrics = match settings.metrics_listen {
        Some(addr) => Some(bind(addr).with_context(|| format!("cannot listen on {addr} (server.metrics_listen)"))?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    Ok(Prepared { core, store: handle, state, metrics, metrics_addr, shutdown_timeout: settings.shutdown_timeout })
}

/// The SMTP transport, or the console mailer (development only: validation refuses it in
/// production).
pub(crate) fn mail_transport(email: &EmailSettings) -> anyhow::Result<Arc<dyn Transport>> {
    match &email.smtp_url {
        Some(url) => Ok(Arc::new(SmtpTransport::new(url.expose(), &email.from)?)),
        None => {
            tracing::warn!(
                "no SMTP server configured (email.smtp_url): e-mails are written to the log, for development"
            );
            Ok(Arc::new(ConsoleTransport))
        }
    }
}

/// Where links point when `public_url` is unset (development): this listener, by name.
fn development_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        format!("http://localhost:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// Serves until `shutdown` resolves; then lets in-flight requests finish (up to the shutdown
/// timeout), flushes usage and closes the store.
pub async fn serve<F>(prepared: Prepared, listener: tokio::net::TcpListener, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Prepared { core, state, shutdown_timeout, metrics, .. } = prepared;
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let metrics_server = async {
        let Some(listener) = metrics else { return };
        let mut stopped = stopped;
        let until = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(err) = layers_server::serve_metrics(listener, state.clone(), until).await {
            tracing::warn!(error = %layers_core::error::chain(&err), "the metrics listener failed");
        }
    };
    let public = async {
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        layers_server::serve(listener, state.clone(), shutdown, shutdown_timeout).await
    };
    let (result, ()) = tokio::join!(public, metrics_server);
    let result = result.context("the HTTP server failed");
    // Every connection has ended (streams cut at the deadline were metered as they dropped):
    // now flush what is buffered and close the store.
    core.shutdown().await;
    core.close().await;
    tracing::info!("stopped");
    result
}

/// Descriptors kept back for the database pool, upstream calls, Redis and files.
const RESERVED_DESCRIPTORS: u64 = 1_024;

/// Raises the soft descriptor limit to the hard one (the default soft limit of 1,024 would make
/// any connection cap meaningless) and lowers the cap to what the limit leaves room for.
fn fit_connection_cap(configured: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|soft| soft < target) {
        limit.current = Some(target);
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %layers_core::error::chain(&err), "cannot raise the open-file limit");
        }
        limit = getrlimit(Resource::Nofile);
    }
    let Some(soft) = limit.current else { return configured };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(64) as usize;
    if room < configured {
        tracing::warn!(
            max_connections = room,
            configured,
            open_file_limit = soft,
            "lowered server.max_connections to fit the open-file limit"
        );
    }
    configured.min(room)
}

/// Binds the public listener with a backlog that absorbs a burst of new connections.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4_096)
}

/// Connects as the app role, migrating first when allowed, and refuses an unsafe database.
pub async fn open_store(db: &DatabaseSettings, production: bool) -> anyhow::Result<Arc<dyn Store>> {
    if db.auto_migrate {
        migrate(db).await?;
    }
    // Checked as the login role: on a never-migrated PostgreSQL the app role does not exist
    // yet, and the operator should hear "run layers migrate", not "role does not exist".
    let login = layers_store::connect(&ConnectOptions { url: db.url.clone(), max_connections: 1, app_role: None })
        .await
        .context("cannot connect to the database")?;
    let migrated = login.check_migrated().await;
    login.close().await;
    migrated.context("the database schema is not ready")?;
    let store = layers_store::connect(&ConnectOptions {
        url: db.url.clone(),
        max_connections: db.max_connections,
        app_role: db.app_role.clone(),
    })
    .await
    .context("cannot connect to the database as the app role")?;
    if db.backend == Backend::Postgres {
        let probe = PgStore::connect(&db.url, 1, db.app_role.as_deref()).await?;
        let confined = probe.check_role_is_confined().await;
        probe.close().await;
        match confined {
            Ok(()) => {}
            Err(err) if production => bail!("refusing to serve: {err}"),
            Err(err) => {
                tracing::warn!(error = %layers_core::error::chain(&err), "the database role is not confined by row-level security")
            }
        }
    }
    Ok(store)
}

/// Applies migrations with the owner connection.
pub async fn migrate(db: &DatabaseSettings) -> anyhow::Result<()> {
    let owner =
        layers_store::connect(&ConnectOptions { url: db.migrate_url.clone(), max_connections: 1, app_role: None })
            .await
            .context("cannot connect to the database to migrate it")?;
    let result = owner.migrate().await.context("migrations failed");
    owner.close().await;
    result
}

/// Builds the peppers, creating the development pepper file on first use.
pub fn load_peppers(source: &PepperSource) -> anyhow::Result<Peppers> {
    let (current, peppers) = match source {
        PepperSource::Configured { current, peppers } => (*current, peppers.clone()),
        PepperSource::DevFile { path, current, older } => {
            let mut peppers = older.clone();
            peppers.insert(*current, dev_pepper(path)?);
            (*current, peppers)
        }
    };
    Peppers::new(current, &peppers).context("invalid key pepper")
}

fn dev_pepper(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).context("the OS random number generator failed")?;
    let pepper = base62::encode_fixed(&bytes, base62::width_for_bytes(48)).unwrap_or_default();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(path, &pepper).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a development key pepper; production requires LAYERS_KEYS__PEPPER");
    Ok(SecretString::from(pepper))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(content.as_bytes())
}

/// The process environment as a map, read once here.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
