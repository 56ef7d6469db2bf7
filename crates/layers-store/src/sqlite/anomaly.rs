//! Anomaly holds on SQLite.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;

use super::accounts::INSERT_ACCOUNT_EVENT;
use super::rows::ms;
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::traits::AnomalyStore;

#[async_trait]
impl AnomalyStore for SqliteStore {
    async fn hold_account(
        &self,
        user: UserId,
        requests_per_minute: u32,
        until: OffsetDateTime,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO anomaly_holds (user_id, previous_rpm, until, created_at) \
             SELECT id, requests_per_minute, ?, ? FROM users WHERE id = ? ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(ms(until))
        .bind(ms(at))
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET requests_per_minute = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(requests_per_minute))
            .bind(ms(at))
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_ACCOUNT_EVENT).bind(user.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn release_anomaly_holds(&self, now: OffsetDateTime) -> StoreResult<Vec<UserId>> {
        let mut tx = self.begin_write().await?;
        let ended: Vec<(String, Option<i64>)> =
            sqlx::query_as("DELETE FROM anomaly_holds WHERE until <= ? RETURNING user_id, previous_rpm")
                .bind(ms(now))
                .fetch_all(&mut *tx)
                .await?;
        let mut users = Vec::with_capacity(ended.len());
        for (user, previous) in ended {
            sqlx::query("UPDATE users SET requests_per_minute = ?, updated_at = ? WHERE id = ?")
                .bind(previous)
                .bind(ms(now))
                .bind(&user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_ACCOUNT_EVENT).bind(&user).execute(&mut *tx).await?;
            users.push(UserId(user.parse().map_err(|_| StoreError::Corrupt { column: "user_id" })?));
        }
        tx.commit().await?;
        Ok(users)
    }
}
