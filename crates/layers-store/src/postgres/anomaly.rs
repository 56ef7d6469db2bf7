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
        // The account's row first, locked: a release running now finishes before this reads
        // the override to keep, so a hold never keeps another hold's value.
        let current: Option<Option<i64>> =
            sqlx::query_scalar("SELECT requests_per_minute FROM users WHERE id = $1 FOR UPDATE")
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else { return Ok(false) };
        // A hold on already: it lasts until the later end.
        let extended = sqlx::query("UPDATE anomaly_holds SET until = GREATEST(until, $1) WHERE user_id = $2")
            .bind(until)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if extended.rows_affected() > 0 {
            tx.commit().await?;
            return Ok(false);
        }
        // Never loosen: an account already held lower keeps its limit.
        let held = current.map_or(i64::from(requests_per_minute), |c| c.min(i64::from(requests_per_minute)));
        sqlx::query("INSERT INTO anomaly_holds (user_id, previous_rpm, held_rpm, until, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(user.0)
            .bind(current)
            .bind(held)
            .bind(until)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET requests_per_minute = $1, updated_at = $2 WHERE id = $3")
            .bind(held)
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

    async fn release_anomaly_holds(&self, _now: OffsetDateTime) -> StoreResult<Vec<UserId>> {
        // The database's clock decides: no caller can lift holds early.
        let users: Vec<Uuid> =
            sqlx::query_scalar("SELECT layers_release_anomaly_holds()").fetch_all(self.pool()).await?;
        Ok(users.into_iter().map(UserId).collect())
    }
}
