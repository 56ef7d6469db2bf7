//! API keys on PostgreSQL.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CapOverrides, KeyAuthRecord, KeyRecord, KeyState, NewKey, UserStatus};
use crate::traits::KeyStore;

const KEY_COLS: &str = "id, user_id, name, env, key_hash, pepper_version, display_prefix, \
     last4, state, spend_limit_micros, max_credits_per_request_micros, max_credits_per_hour_micros, spent_micros, \
     expires_at, created_at, last_used_at";

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, new: &NewKey) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(new.user_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, user_id, name, env, key_hash, pepper_version, display_prefix, last4, \
             state, spend_limit_micros, expires_at, created_at, state_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11, $11) RETURNING {KEY_COLS}"
        ))
        .bind(new.id.0)
        .bind(new.user_id.0)
        .bind(&new.name)
        .bind(new.env.as_str())
        .bind(&new.key_hash)
        .bind(new.pepper_version)
        .bind(&new.display_prefix)
        .bind(&new.last4)
        .bind(new.spend_limit.map(|m| m.0))
        .bind(new.expires_at)
        .bind(new.created_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        rows::key(&row)
    }

    async fn key_for_auth(&self, key_hash: &[u8]) -> StoreResult<Option<KeyAuthRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS}, tier, user_status, account_max_per_request_micros, account_max_per_hour_micros, \
             account_requests_per_minute, account_tokens_per_minute FROM layers_key_for_auth($1)"
        ))
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tier: String = row.try_get("tier")?;
        let status: String = row.try_get("user_status")?;
        Ok(Some(KeyAuthRecord {
            key: rows::key(&row)?,
            tier: tier.parse().map_err(|_| StoreError::Corrupt { column: "tier" })?,
            user_status: UserStatus::from_db(&status).ok_or(StoreError::Corrupt { column: "status" })?,
            account_caps: rows::caps(&row, "account_max_per_request_micros", "account_max_per_hour_micros")?,
            account_rate: rows::rate(&row, "account_requests_per_minute", "account_tokens_per_minute")?,
        }))
    }

    async fn keys_of_user(&self, user: UserId) -> StoreResult<Vec<KeyRecord>> {
        let mut tx = self.begin_as(user).await?;
        let rows =
            sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id"))
                .bind(user.0)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        rows.iter().map(rows::key).collect()
    }

    async fn keys_by_prefix(&self, display_prefix: &str) -> StoreResult<Vec<KeyRecord>> {
        let owners: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT id, user_id FROM layers_keys_by_prefix($1)")
            .bind(display_prefix)
            .fetch_all(self.pool())
            .await?;
        let mut found = Vec::with_capacity(owners.len());
        for (key_id, user_id) in owners {
            let keys = self.keys_of_user(UserId(user_id)).await?;
            found.extend(keys.into_iter().filter(|k| k.id.0 == key_id));
        }
        Ok(found)
    }

    async fn set_key_state(&self, user: UserId, key: KeyId, state: KeyState) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET state = $1, state_changed_at = now() WHERE id = $2 AND user_id = $3 \
             RETURNING {KEY_COLS}"
        ))
        .bind(state.as_str())
        .bind(key.0)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "api key" })?;
        let record = rows::key(&row)?;
        announce_key(&mut tx, &record).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_key_limits(
        &self,
        user: UserId,
        key: KeyId,
        caps: CapOverrides,
        spend_limit: Option<MicroCredits>,
    ) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET max_credits_per_request_micros = $1, max_credits_per_hour_micros = $2, \
             spend_limit_micros = $3 WHERE id = $4 AND user_id = $5 RETURNING {KEY_COLS}"
        ))
        .bind(caps.per_request.map(|m| m.0))
        .bind(caps.per_hour.map(|m| m.0))
        .bind(spend_limit.map(|m| m.0))
        .bind(key.0)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "api key" })?;
        let record = rows::key(&row)?;
        announce_key(&mut tx, &record).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn touch_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = used.iter().map(|(k, _)| k.0).collect();
        let times: Vec<OffsetDateTime> = used.iter().map(|(_, t)| *t).collect();
        sqlx::query("SELECT layers_touch_keys($1, $2)").bind(&ids).bind(&times).execute(self.pool()).await?;
        Ok(())
    }
}

/// Tells every node's cache that this key changed.
async fn announce_key(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, record: &KeyRecord) -> StoreResult<()> {
    sqlx::query("INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('key', $1, $2)")
        .bind(&record.key_hash)
        .bind(record.user_id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
