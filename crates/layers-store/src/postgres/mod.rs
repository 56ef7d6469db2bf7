//! PostgreSQL backend (production). Every connection of the server switches to the app role,
//! which owns nothing and is bound by row-level security. Invariant: work on behalf of a user
//! runs in a transaction that names the user (`SET LOCAL app.user_id`); work that is not goes
//! through the SECURITY DEFINER functions of the migrations.

mod accounts;
mod alerts;
mod anomaly;
mod audit;
mod credits;
mod events;
mod identity;
mod keys;
mod ledger;
mod payments;
mod rows;
mod sessions;
mod usage;

use std::time::Duration;

use async_trait::async_trait;
use layers_domain::UserId;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres};

use crate::error::{StoreError, StoreResult};
use crate::migrations;
use crate::{Backend, Store};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32, app_role: Option<&str>) -> StoreResult<PgStore> {
        let set_role = app_role.map(|role| format!("SET ROLE \"{}\"", role.replace('"', "\"\"")));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let set_role = set_role.clone();
                Box::pin(async move {
                    if let Some(stmt) = set_role {
                        conn.execute(stmt.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction on behalf of `user`: row-level security limits it to that user's rows.
    pub(crate) async fn begin_as(&self, user: UserId) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        // A Uuid displays as hex digits and hyphens only, so it is safe to inline; doing so
        // saves a round trip on every user-scoped operation.
        Ok(self.pool.begin_with(format!("BEGIN; SET LOCAL app.user_id = '{}'", user.0)).await?)
    }

    /// Refuses a connection that could read past row-level security: the effective role (after
    /// `SET ROLE`) and the login role must both be unable to bypass it, and own no table (a
    /// login role that could simply `RESET ROLE` is no confinement at all).
    pub async fn check_role_is_confined(&self) -> StoreResult<()> {
        let roles: Vec<(String, String, bool, bool, i64)> = sqlx::query_as(
            "SELECT which, r.rolname::text, r.rolsuper, r.rolbypassrls, \
                    (SELECT count(*) FROM pg_tables t WHERE t.schemaname = current_schema() AND t.tableowner = r.rolname) \
             FROM (VALUES ('effective', current_user), ('login', session_user)) AS w(which, name) \
             JOIN pg_roles r ON r.rolname = w.name",
        )
        .fetch_all(&self.pool)
        .await?;
        for (which, role, superuser, bypass, owned) in roles {
            if superuser || bypass {
                return Err(StoreError::UnsafeRole {
                    detail: format!("the {which} role {role} is a superuser or has BYPASSRLS"),
                });
            }
            if owned > 0 {
                return Err(StoreError::UnsafeRole {
                    detail: format!(
                        "the {which} role {role} owns {owned} table(s); the server must not own its tables"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn check_migrated(&self) -> StoreResult<()> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&self.pool).await?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?
        } else {
            Vec::new()
        };
        migrations::compare(&MIGRATOR, &applied)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
