//! Anomaly holds on PostgreSQL: set under the account's row-level security; released for every
//! account by a `SECURITY DEFINER` function.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::PgStore;
use crate::error::StoreResult;
use crate::traits::AnomalyStore;

#[async_trait]
impl AnomalyStore for PgStore {
    async fn hold_account(
        &self,
        user: UserId,
        requests_per_minute: u32,
        until: OffsetDateTime,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query(
            "INSERT INTO anomaly_holds (user_id, previous_rpm, until, created_at) \
             SELECT id, requests_per_minute, $1, $2 FROM users WHERE id = $3 ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(until)
        .bind(at)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET requests_per_minute = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(requests_per_minute))
            .bind(at)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('account', NULL, $1)")
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn release_anomaly_holds(&self, now: OffsetDateTime) -> StoreResult<Vec<UserId>> {
        let users: Vec<Uuid> =
            sqlx::query_scalar("SELECT layers_release_anomaly_holds($1)").bind(now).fetch_all(self.pool()).await?;
        Ok(users.into_iter().map(UserId).collect())
    }
}
