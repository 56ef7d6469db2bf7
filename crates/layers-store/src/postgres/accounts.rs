//! Users and their tiers on PostgreSQL.

use async_trait::async_trait;
use layers_domain::{Tier, UserId};
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CapOverrides, NewUser, RateOverrides, User, UserStatus};
use crate::traits::AccountStore;

const USER_COLS: &str =
    "id, email, tier, status, max_credits_per_request_micros, max_credits_per_hour_micros, requests_per_minute, \
     tokens_per_minute, created_at";

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, new: &NewUser) -> StoreResult<User> {
        let mut tx = self.begin_as(new.id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO users (id, email, tier, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $4) RETURNING {USER_COLS}"
        ))
        .bind(new.id.0)
        .bind(&new.email)
        .bind(new.tier.as_str())
        .bind(new.created_at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO credit_balances (user_id, balance_micros, updated_at) VALUES ($1, 0, $2)")
            .bind(new.id.0)
            .bind(new.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows::user(&row)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT layers_user_id_by_email($1)").bind(email).fetch_one(self.pool()).await?;
        match id {
            Some(id) => self.user(UserId(id)).await,
            None => Ok(None),
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let mut tx = self.begin_as(id).await?;
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn set_tier(&self, id: UserId, tier: Tier) -> StoreResult<()> {
        self.update_user(id, "tier", tier.as_str()).await
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StoreResult<()> {
        self.update_user(id, "status", status.as_str()).await
    }

    async fn set_user_rate(&self, id: UserId, rate: RateOverrides) -> StoreResult<()> {
        let mut tx = self.begin_as(id).await?;
        let done = sqlx::query(
            "UPDATE users SET requests_per_minute = $1, tokens_per_minute = $2, updated_at = now() WHERE id = $3",
        )
        .bind(rate.requests_per_minute.map(i64::from))
        .bind(rate.tokens_per_minute.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }

    async fn set_user_caps(&self, id: UserId, caps: CapOverrides) -> StoreResult<()> {
        let mut tx = self.begin_as(id).await?;
        let done = sqlx::query(
            "UPDATE users SET max_credits_per_request_micros = $1, max_credits_per_hour_micros = $2, \
             updated_at = now() WHERE id = $3",
        )
        .bind(caps.per_request.map(|m| m.0))
        .bind(caps.per_hour.map(|m| m.0))
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }
}

impl PgStore {
    /// Sets one text column of a user and announces the change to every node's cache.
    async fn update_user(&self, id: UserId, column: &'static str, value: &str) -> StoreResult<()> {
        let mut tx = self.begin_as(id).await?;
        let done = sqlx::query(&format!("UPDATE users SET {column} = $1, updated_at = now() WHERE id = $2"))
            .bind(value)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        finish_user_change(tx, id, done.rows_affected()).await
    }
}

/// Ends a change of one user's row: refused when there is no such user, otherwise announced to
/// every node's cache (the account feed) and committed.
async fn finish_user_change(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: UserId,
    rows: u64,
) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::NotFound { entity: "user" });
    }
    sqlx::query("INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('account', NULL, $1)")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
