//! Persistence for Layers. SQL lives in this crate and nowhere else.
//!
//! Components:
//! - [`traits`]: one trait per concern (accounts, keys, ledger, credit leases and settlement,
//!   usage, audit, sessions, cache events); [`Store`] is all of them plus lifecycle.
//! - [`records`]: the typed rows both backends read and write; `settlement`: how both apply
//!   layers-domain's credit rules to them.
//! - [`sqlite`]: the embedded default, one WAL file.
//! - [`postgres`]: production, with row-level security; the server works as `layers_app`.
//! - `migrations/{sqlite,postgres}`: numbered, append-only, embedded in the binary.
//! - `testing` (feature): throwaway databases for tests.

mod error;
mod migrations;
mod payments;
pub mod postgres;
pub mod records;
mod settlement;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traits;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::{StoreError, StoreResult};
pub use records::*;
pub use traits::*;

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything the services need from persistence.
#[async_trait]
pub trait Store:
    AccountStore
    + KeyStore
    + LedgerStore
    + CreditStore
    + UsageStore
    + AuditStore
    + SessionStore
    + IdentityStore
    + AlertStore
    + PaymentStore
    + AnomalyStore
    + CacheEventStore
    + std::fmt::Debug
    + 'static
{
    fn backend(&self) -> Backend;
    /// Applies pending migrations (run as the owner role on PostgreSQL).
    async fn migrate(&self) -> StoreResult<()>;
    /// Fails unless every migration of this build is applied and no unknown one is.
    async fn check_migrated(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `sqlite://path` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: the role every connection switches to (`SET ROLE`). `None` keeps the
    /// login role, which is right for migrations and for a login role that is the app role.
    pub app_role: Option<String>,
}

/// Opens the backend named by the URL's scheme.
pub async fn connect(options: &ConnectOptions) -> StoreResult<Arc<dyn Store>> {
    match backend_of(&options.url) {
        Some(Backend::Sqlite) => {
            Ok(Arc::new(sqlite::SqliteStore::connect(&options.url, options.max_connections).await?))
        }
        Some(Backend::Postgres) => Ok(Arc::new(
            postgres::PgStore::connect(&options.url, options.max_connections, options.app_role.as_deref()).await?,
        )),
        None => Err(StoreError::UnsupportedUrl),
    }
}

/// The backend a database URL names, if any.
pub fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else {
        None
    }
}
