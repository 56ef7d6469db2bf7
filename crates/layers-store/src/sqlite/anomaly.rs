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
        // BEGIN IMMEDIATE: no release runs between reading the override and replacing it.
        let mut tx = self.begin_write().await?;
        let current: Option<Option<i64>> = sqlx::query_scalar("SELECT requests_per_minute FROM users WHERE id = ?")
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current else { return Ok(false) };
        let extended = sqlx::query("UPDATE anomaly_holds SET until = MAX(until, ?) WHERE user_id = ?")
            .bind(ms(until))
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        if extended.rows_affected() > 0 {
            tx.commit().await?;
            return Ok(false);
        }
        let held = current.map_or(i64::from(requests_per_minute), |c| c.min(i64::from(requests_per_minute)));
        sqlx::query(
            "INSERT INTO anomaly_holds (user_id, previous_rpm, held_rpm, until, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user.to_string())
        .bind(current)
        .bind(held)
        .bind(ms(until))
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE users SET requests_per_minute = ?, updated_at = ? WHERE id = ?")
            .bind(held)
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
        let ended: Vec<(String, Option<i64>, i64)> =
            sqlx::query_as("DELETE FROM anomaly_holds WHERE until <= ? RETURNING user_id, previous_rpm, held_rpm")
                .bind(ms(now))
                .fetch_all(&mut *tx)
                .await?;
        let mut users = Vec::with_capacity(ended.len());
        for (user, previous, held) in ended {
            // Put back only while the hold's value is in force: an operator's change stays.
            sqlx::query(
                "UPDATE users SET requests_per_minute = ?, updated_at = ? WHERE id = ? AND requests_per_minute IS ?",
            )
            .bind(previous)
            .bind(ms(now))
            .bind(&user)
            .bind(held)
            .execute(&mut *tx)
            .await?;
            sqlx::query(INSERT_ACCOUNT_EVENT).bind(&user).execute(&mut *tx).await?;
            users.push(UserId(user.parse().map_err(|_| StoreError::Corrupt { column: "user_id" })?));
        }
        tx.commit().await?;
        Ok(users)
    }
}
