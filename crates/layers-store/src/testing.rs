//! Throwaway databases for tests: a temporary SQLite file, or a fresh PostgreSQL database per
//! test so tests run in parallel. Invariant: a missing PostgreSQL fails the test unless
//! `LAYERS_TEST_SKIP_POSTGRES=1`, and then the skip is printed, never silent.

use std::sync::Arc;

use crate::{connect, ConnectOptions, Store};

/// The server's PostgreSQL role, as created by the migrations.
pub const APP_ROLE: &str = "layers_app";

/// A database that exists for one test and is dropped after it.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL for the owner (migrations) and, on SQLite, for everything.
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        name: String,
        admin_url: String,
    },
    /// Another test's database, shared (a second node); dropped by its owner.
    Shared {
        postgres: bool,
    },
}

/// The PostgreSQL server tests use: `LAYERS_TEST_POSTGRES_URL`, else the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("LAYERS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

impl TestDatabase {
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let url = format!("sqlite://{}", dir.path().join("layers.db").display());
        TestDatabase { url, kind: Kind::Sqlite(dir) }
    }

    /// A fresh, empty PostgreSQL database, or `None` (after saying so) when PostgreSQL is
    /// unreachable and the run allows skipping.
    pub async fn postgres() -> Option<TestDatabase> {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) => {
                if std::env::var("LAYERS_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                    eprintln!("SKIPPED (PostgreSQL unreachable at {admin_url}: {err})");
                    return None;
                }
                panic!(
                    "PostgreSQL is not reachable at {admin_url} ({err}). Start it (scripts/test does), point \
                     LAYERS_TEST_POSTGRES_URL at one, or set LAYERS_TEST_SKIP_POSTGRES=1 to skip these tests."
                );
            }
        };
        let name = format!("layers_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database: {e}"));
        let _ = admin.close().await;
        let url = replace_db_name(&admin_url, &name);
        Some(TestDatabase { url, kind: Kind::Postgres { name, admin_url } })
    }

    /// The same database, for a second node of one deployment (never dropped through it).
    pub fn share(&self) -> TestDatabase {
        TestDatabase::shared(&self.url, self.is_postgres())
    }

    pub fn shared(url: &str, postgres: bool) -> TestDatabase {
        TestDatabase { url: url.to_owned(), kind: Kind::Shared { postgres } }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. } | Kind::Shared { postgres: true })
    }

    /// Migrates as the owner and returns the store the server would use (the app role on
    /// PostgreSQL).
    pub async fn store(&self) -> Arc<dyn Store> {
        let owner = connect(&ConnectOptions { url: self.url.clone(), max_connections: 2, app_role: None })
            .await
            .unwrap_or_else(|e| panic!("cannot open test database: {e}"));
        owner.migrate().await.unwrap_or_else(|e| panic!("migrations failed: {e:?}"));
        if self.is_postgres() {
            owner.close().await;
            connect(&ConnectOptions { url: self.url.clone(), max_connections: 8, app_role: Some(APP_ROLE.to_owned()) })
                .await
                .unwrap_or_else(|e| panic!("cannot open test database as {APP_ROLE}: {e}"))
        } else {
            owner
        }
    }
}

impl TestDatabase {
    /// Moves an account's usage rows and anomaly holds `days` into the past, as if they were
    /// that old (the database's own clock decides what retention and holds do on PostgreSQL).
    /// Runs as the owner, outside the server's role.
    pub async fn age_account(&self, user: layers_domain::UserId, days: i64) {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            for table in ["usage_logs", "anomaly_holds"] {
                let column = if table == "usage_logs" { "created_at" } else { "until" };
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = {column} - make_interval(days => $1) WHERE user_id = $2"
                ))
                .bind(i32::try_from(days).unwrap_or(i32::MAX))
                .bind(user.0)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("age {table}: {e}"));
            }
            let _ = conn.close().await;
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            for (table, column) in [("usage_logs", "created_at"), ("anomaly_holds", "until")] {
                sqlx::query(&format!("UPDATE {table} SET {column} = {column} - ? WHERE user_id = ?"))
                    .bind(days * 86_400_000)
                    .bind(user.to_string())
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("age {table}: {e}"));
            }
            let _ = conn.close().await;
        }
    }

    /// Moves a lease's expiry into the past, as if its node had stopped renewing it an hour ago
    /// (the next reap ends it). Runs as the owner, outside the server's role.
    pub async fn expire_lease(&self, lease: uuid::Uuid) {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            sqlx::query("UPDATE credit_leases SET expires_at = now() - interval '1 hour' WHERE id = $1")
                .bind(lease)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("expire lease: {e}"));
            let _ = conn.close().await;
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            sqlx::query("UPDATE credit_leases SET expires_at = 0 WHERE id = ?")
                .bind(lease.to_string())
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("expire lease: {e}"));
            let _ = conn.close().await;
        }
    }
}

impl TestDatabase {
    /// Makes every node's read of the change feed fail while writes to it still succeed (a
    /// feed that is broken, not a database that is down). Runs as the owner.
    pub async fn break_change_feed(&self) {
        use sqlx::Connection;
        let sql = if self.is_postgres() {
            "ALTER FUNCTION layers_cache_events_since(timestamptz) RENAME TO layers_cache_events_since_broken"
        } else {
            "ALTER TABLE cache_events RENAME COLUMN reclaim_epoch TO reclaim_epoch_broken"
        };
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("break the feed: {e}"));
            let _ = conn.close().await;
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("break the feed: {e}"));
            let _ = conn.close().await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Kind::Postgres { name, admin_url } = &self.kind else { return };
        let (name, admin_url) = (name.clone(), admin_url.clone());
        // Drop runs inside the test's runtime; a separate thread with its own runtime may block.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
