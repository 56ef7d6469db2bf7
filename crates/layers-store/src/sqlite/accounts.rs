//! Users and their tiers on SQLite.

use async_trait::async_trait;
use layers_domain::{Tier, UserId};

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CapOverrides, NewUser, RateOverrides, User, UserStatus};
use crate::traits::AccountStore;

const USER_COLS: &str =
    "id, email, tier, status, max_credits_per_request_micros, max_credits_per_hour_micros, requests_per_minute, \
     tokens_per_minute, created_at";
pub(super) const INSERT_ACCOUNT_EVENT: &str = "INSERT INTO cache_events (scope, key_hash, user_id, created_at) \
     VALUES ('account', NULL, ?, CAST(unixepoch('subsec') * 1000 AS INTEGER))";

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, new: &NewUser) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let at = ms(new.created_at);
        let id = new.id.to_string();
        let row = sqlx::query(&format!(
            "INSERT INTO users (id, email, tier, status, created_at, updated_at) \
             VALUES (?, ?, ?, 'active', ?, ?) RETURNING {USER_COLS}"
        ))
        .bind(&id)
        .bind(&new.email)
        .bind(new.tier.as_str())
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO credit_balances (user_id, balance_micros, updated_at) VALUES (?, 0, ?)")
            .bind(&id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows::user(&row)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE email = ?"))
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn set_tier(&self, id: UserId, tier: Tier) -> StoreResult<()> {
        self.update_user(id, "tier", tier.as_str()).await
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StoreResult<()> {
        self.update_user(id, "status", status.as_str()).await
    }

    async fn set_user_rate(&self, id: UserId, rate: RateOverrides) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("UPDATE users SET requests_per_minute = ?, tokens_per_minute = ?, updated_at = ? WHERE id = ?")
                .bind(rate.requests_per_minute.map(i64::from))
                .bind(rate.tokens_per_minute.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
                .bind(ms(time::OffsetDateTime::now_utc()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }

    async fn set_user_caps(&self, id: UserId, caps: CapOverrides) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE users SET max_credits_per_request_micros = ?, max_credits_per_hour_micros = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(caps.per_request.map(|m| m.0))
        .bind(caps.per_hour.map(|m| m.0))
        .bind(ms(time::OffsetDateTime::now_utc()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }
}

impl SqliteStore {
    /// Sets one text column of a user and announces the change to every node's cache.
    async fn update_user(&self, id: UserId, column: &'static str, value: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let now = ms(time::OffsetDateTime::now_utc());
        let done = sqlx::query(&format!("UPDATE users SET {column} = ?, updated_at = ? WHERE id = ?"))
            .bind(value)
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }
}

/// Ends a change of one user's row: refused when there is no such user, otherwise announced to
/// every node's cache (the account feed) and committed.
async fn finish_user_change(
    mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    id: UserId,
    rows: u64,
) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::NotFound { entity: "user" });
    }
    sqlx::query(INSERT_ACCOUNT_EVENT).bind(id.to_string()).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
