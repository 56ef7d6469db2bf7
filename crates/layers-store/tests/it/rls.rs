//! Row-level security on PostgreSQL: connected as the app role, one user cannot read or change
//! another's rows even when a query leaves out the user filter.

use layers_store::postgres::PgStore;
use layers_store::testing::{TestDatabase, APP_ROLE};
use layers_store::{Store, StoreError};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::support::{key, user};

#[tokio::test]
async fn one_user_cannot_read_or_change_another_users_rows() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let store = db.store().await;
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    key(&store, &alice, 1).await;
    key(&store, &bob, 2).await;
    for u in [&alice, &bob] {
        let alerts = layers_store::AlertSettings { key_thresholds: vec![80], ..Default::default() };
        store.set_alert_settings(u.id, &alerts, crate::support::now()).await.unwrap();
        let firing = layers_store::AlertFiring {
            user: u.id,
            kind: "low_balance",
            subject: String::new(),
            period: "0".into(),
            threshold: 1,
            at: crate::support::now(),
        };
        assert!(store.claim_alert(&firing).await.unwrap());
        store.set_stripe_customer(u.id, &format!("cus_{}", u.id), crate::support::now()).await.unwrap();
        let invoice = layers_store::InvoiceRecord {
            id: format!("in_{}", u.id),
            number: None,
            amount_paid_cents: 1,
            currency: "usd".into(),
            status: "paid".into(),
            hosted_url: None,
            pdf_url: None,
            created_at: crate::support::now(),
        };
        let event = layers_store::StripeEventRecord { id: format!("evt_{}", u.id), event_type: "invoice.paid".into() };
        store
            .apply_payment(u.id, Some(&event), &[layers_store::PaymentEffect::Invoice(invoice)], crate::support::now())
            .await
            .unwrap();
    }

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute(format!("SET ROLE {APP_ROLE}").as_str()).await.unwrap();

    // No user named: nothing is visible, in any table.
    for table in [
        "users",
        "api_keys",
        "credit_balances",
        "credit_transactions",
        "usage_logs",
        "audit_logs",
        "sessions",
        "email_tokens",
        "alert_settings",
        "alert_firings",
        "key_spend_days",
        "billing_accounts",
        "stripe_events",
        "stripe_invoices",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut conn).await.unwrap();
        assert_eq!(n, 0, "{table} visible without app.user_id");
    }

    let mut tx = conn.begin().await.unwrap();
    tx.execute(format!("SET LOCAL app.user_id = '{}'", alice.id).as_str()).await.unwrap();
    // Unfiltered queries only see Alice.
    let emails: Vec<String> = sqlx::query_scalar("SELECT email FROM users").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(emails, vec!["alice@example.com".to_owned()]);
    let owners: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT user_id FROM api_keys").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(owners, vec![alice.id.0]);
    for table in ["alert_settings", "alert_firings", "billing_accounts", "stripe_events", "stripe_invoices"] {
        let users: Vec<uuid::Uuid> =
            sqlx::query_scalar(&format!("SELECT user_id FROM {table}")).fetch_all(&mut *tx).await.unwrap();
        assert_eq!(users, vec![alice.id.0], "{table} shows Alice's rows only");
    }
    // Changing Bob's rows touches nothing.
    let done =
        sqlx::query("UPDATE users SET tier = 'team' WHERE id = $1").bind(bob.id.0).execute(&mut *tx).await.unwrap();
    assert_eq!(done.rows_affected(), 0);
    let done = sqlx::query("UPDATE credit_balances SET balance_micros = 999").execute(&mut *tx).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "only Alice's own balance row");
    // Writing a row for Bob is refused by the policy's WITH CHECK.
    let err = sqlx::query(
        "INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros, idempotency_key, created_at) \
         VALUES (gen_random_uuid(), $1, 'grant', 1, 1, 'evil', now())",
    )
    .bind(bob.id.0)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The app role cannot switch RLS off, nor reach the tables as their owner.
    let mut tx = conn.begin().await.unwrap();
    assert!(tx.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY").await.is_err());
    tx.rollback().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    assert!(tx.execute("SET LOCAL row_security = off; SELECT count(*) FROM users").await.is_err());
    tx.rollback().await.unwrap();

    // Bob's balance is untouched.
    assert_eq!(store.balance(bob.id).await.unwrap().0, 0);
    let row = sqlx::query("SELECT current_user::text AS u").fetch_one(&mut conn).await.unwrap();
    assert_eq!(row.get::<String, _>("u"), APP_ROLE);
}

#[tokio::test]
async fn the_server_role_is_confined_and_the_owner_is_not() {
    let Some(db) = TestDatabase::postgres().await else { return };
    db.store().await; // migrate
                      // A login role that may only become layers_app, as docs/postgres.md sets it up.
    let login = format!("layers_login_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    admin.execute(format!("CREATE ROLE {login} LOGIN NOINHERIT IN ROLE {APP_ROLE}").as_str()).await.unwrap();
    let login_url = db.url.replacen("postgres@", &format!("{login}@"), 1);
    assert_ne!(login_url, db.url, "test URL shape changed: {}", db.url);

    let app = PgStore::connect(&login_url, 1, Some(APP_ROLE)).await.unwrap();
    app.check_role_is_confined().await.unwrap();
    // Logged in as the owner (a superuser here), SET ROLE is no confinement: RESET ROLE escapes it.
    let owner_as_app = PgStore::connect(&db.url, 1, Some(APP_ROLE)).await.unwrap();
    let err = owner_as_app.check_role_is_confined().await.unwrap_err();
    assert!(matches!(&err, StoreError::UnsafeRole { detail } if detail.contains("login role")), "{err:?}");
    let owner = PgStore::connect(&db.url, 1, None).await.unwrap();
    assert!(matches!(owner.check_role_is_confined().await.unwrap_err(), StoreError::UnsafeRole { .. }));
    app.close().await;
    owner_as_app.close().await;
    owner.close().await;
    let _ = admin.close().await;
    drop(db);
    let mut server = PgConnection::connect(&layers_store::testing::postgres_admin_url()).await.unwrap();
    server.execute(format!("DROP ROLE IF EXISTS {login}").as_str()).await.unwrap();
}

/// Every table that holds a `user_id`, now and in every later migration, has row-level security
/// enabled and forced, and shows the server's role nothing without an account named.
#[tokio::test]
async fn every_table_holding_user_data_is_under_forced_row_level_security() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let store = db.store().await;
    let u = user(&store, "everywhere@example.com").await;
    key(&store, &u, 9).await;
    let mut owner = PgConnection::connect(&db.url).await.unwrap();
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND EXISTS \
           (SELECT 1 FROM information_schema.columns col WHERE col.table_schema = n.nspname \
            AND col.table_name = c.relname AND col.column_name = 'user_id') ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(tables.len() >= 20, "found the user tables: {tables:?}");
    for (table, enabled, forced) in &tables {
        assert!(*enabled && *forced, "{table}: row-level security enabled and forced");
    }
    let mut app = PgConnection::connect(&db.url).await.unwrap();
    app.execute(format!("SET ROLE {APP_ROLE}").as_str()).await.unwrap();
    for (table, _, _) in &tables {
        // Without an account named, nothing is visible, and nothing can be written for one.
        let seen = sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut app).await;
        match seen {
            Ok(n) => assert_eq!(n, 0, "{table} visible without app.user_id"),
            Err(err) => assert!(err.to_string().contains("permission denied"), "{table}: {err}"),
        }
        let wrote = sqlx::query(&format!("UPDATE {table} SET user_id = user_id")).execute(&mut app).await;
        if let Ok(done) = wrote {
            assert_eq!(done.rows_affected(), 0, "{table}: rows changed without app.user_id");
        }
    }
    let _ = owner.close().await;
    let _ = app.close().await;
}

/// The audit trail, the ledger and Stripe's event records are append-only for the server's
/// role: it may read and add, never change or delete.
#[tokio::test]
async fn the_audit_trail_and_the_ledger_are_append_only_for_the_server() {
    let Some(db) = TestDatabase::postgres().await else { return };
    db.store().await;
    let mut owner = PgConnection::connect(&db.url).await.unwrap();
    for table in ["audit_logs", "credit_transactions", "stripe_events"] {
        for (privilege, allowed) in
            [("SELECT", true), ("INSERT", true), ("UPDATE", false), ("DELETE", false), ("TRUNCATE", false)]
        {
            let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
                .bind(APP_ROLE)
                .bind(table)
                .bind(privilege)
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(has, allowed, "{APP_ROLE} {privilege} on {table}");
        }
    }
    let _ = owner.close().await;
}
