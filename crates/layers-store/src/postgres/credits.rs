//! Credit leases and settlement on PostgreSQL. Leases are taken in a transaction that names the
//! user (row-level security applies); settlement, renewal and the reaper act for many users and
//! go through the SECURITY DEFINER functions of migration 0002.

use async_trait::async_trait;
use layers_domain::{MicroCredits, UserId};
use sqlx::Row;
use uuid::Uuid;

use super::rows;
use super::usage::to_json;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::*;
use crate::traits::CreditStore;

#[async_trait]
impl CreditStore for PgStore {
    async fn acquire_lease(&self, req: &LeaseRequest) -> StoreResult<LeaseGrant> {
        let mut tx = self.begin_as(req.user).await?;
        let row = sqlx::query(
            "SELECT granted, balance, available, account_hour_room, key_hour_room, key_total_room, lease_ended \
             FROM layers_acquire_lease($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(req.lease_id)
        .bind(req.user.0)
        .bind(req.key.0)
        .bind(req.node)
        .bind(req.min.0)
        .bind(req.want.0)
        .bind(req.account_hour_cap.map(|m| m.0))
        .bind(req.key_hour_cap.map(|m| m.0))
        .bind(req.key_total_cap.map(|m| m.0))
        .bind(ttl_ms(req.ttl))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let opt = |col: &str| -> StoreResult<Option<MicroCredits>> {
            Ok(row.try_get::<Option<i64>, _>(col)?.map(MicroCredits))
        };
        Ok(LeaseGrant {
            granted: MicroCredits(row.try_get("granted")?),
            balance: MicroCredits(row.try_get("balance")?),
            available: MicroCredits(row.try_get("available")?),
            account_hour_room: opt("account_hour_room")?,
            key_hour_room: opt("key_hour_room")?,
            key_total_room: opt("key_total_room")?,
            lease_ended: row.try_get("lease_ended")?,
        })
    }

    async fn return_lease(&self, user: UserId, lease: Uuid, amount: MicroCredits, end: bool) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        // Balance first, then lease: the order every path takes, so none can deadlock another.
        sqlx::query("SELECT 1 FROM credit_balances WHERE user_id = $1 FOR UPDATE")
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT amount_micros FROM credit_leases WHERE id = $1 AND user_id = $2 AND state = 'active' FOR UPDATE",
        )
        .bind(lease)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else { return Ok(false) };
        let back = amount.0.clamp(0, current);
        let released = if end { current } else { back };
        sqlx::query(
            "UPDATE credit_leases SET amount_micros = amount_micros - $1, \
             state = CASE WHEN $2 THEN 'released' ELSE state END, ended_at = CASE WHEN $2 THEN now() END \
             WHERE id = $3",
        )
        .bind(back)
        .bind(end)
        .bind(lease)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE credit_balances SET leased_micros = greatest(0, leased_micros - $1) WHERE user_id = $2")
            .bind(released)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn renew_leases(&self, node: Uuid, leases: &[Uuid], ttl: std::time::Duration) -> StoreResult<Vec<Uuid>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar("SELECT layers_renew_leases($1, $2, $3)")
            .bind(node)
            .bind(leases)
            .bind(ttl_ms(ttl))
            .fetch_all(self.pool())
            .await?)
    }

    async fn settle(&self, batch: &[Settlement]) -> StoreResult<Vec<SettleResult>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(batch.len());
        for (ord, s) in batch.iter().enumerate() {
            let mut v = to_json(&s.usage)?;
            v["ord"] = serde_json::json!(ord);
            v["lease_id"] = serde_json::json!(s.lease_id);
            v["overage_micros"] = serde_json::json!(s.overage.0);
            rows.push(v);
        }
        let mut tx = self.pool().begin().await?;
        let out = sqlx::query("SELECT usage_id, outcome, charged_micros, balance_after_micros FROM layers_settle($1)")
            .bind(serde_json::Value::Array(rows))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        out.iter()
            .map(|r| {
                let outcome: String = r.try_get("outcome")?;
                Ok(SettleResult {
                    usage_id: r.try_get("usage_id")?,
                    outcome: SettleOutcome::from_db(&outcome).ok_or(StoreError::Corrupt { column: "outcome" })?,
                    charged: MicroCredits(r.try_get::<Option<i64>, _>("charged_micros")?.unwrap_or(0)),
                    balance_after: r.try_get::<Option<i64>, _>("balance_after_micros")?.map(MicroCredits),
                })
            })
            .collect()
    }

    async fn reap_expired_leases(&self) -> StoreResult<Reaped> {
        let row = sqlx::query("SELECT leases, micros FROM layers_reap_leases()").fetch_one(self.pool()).await?;
        Ok(Reaped { leases: row.try_get::<i64, _>("leases")?.max(0) as u64, micros: row.try_get("micros")? })
    }

    async fn leases_of_user(&self, user: UserId) -> StoreResult<Vec<LeaseRecord>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(
            "SELECT id, user_id, key_id, node_id, amount_micros, state, expires_at FROM credit_leases \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::lease).collect()
    }

    async fn credit_state(&self, user: UserId) -> StoreResult<CreditState> {
        let mut tx = self.begin_as(user).await?;
        let (balance, leased): (i64, i64) =
            sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        tx.commit().await?;
        Ok(CreditState { balance: MicroCredits(balance), leased: MicroCredits(leased) })
    }
}

fn ttl_ms(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}
