//! API keys on SQLite.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use time::OffsetDateTime;

use super::rows::{self, ms, opt_ms};
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CapOverrides, KeyAuthRecord, KeyRecord, KeyState, NewKey, UserStatus};
use crate::traits::KeyStore;

const KEY_COLS: &str = "id, user_id, name, env, key_hash, pepper_version, display_prefix, \
     last4, state, spend_limit_micros, max_credits_per_request_micros, max_credits_per_hour_micros, spent_micros, \
     expires_at, created_at, last_used_at";
/// The same columns, qualified for joins with `users`.
const KEY_COLS_K: &str = "k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix, \
     k.last4, k.state, k.spend_limit_micros, k.max_credits_per_request_micros, k.max_credits_per_hour_micros, \
     k.spent_micros, k.expires_at, k.created_at, k.last_used_at";

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, new: &NewKey) -> StoreResult<KeyRecord> {
        let at = ms(new.created_at);
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, user_id, name, env, key_hash, pepper_version, display_prefix, last4, \
             state, spend_limit_micros, expires_at, created_at, state_changed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?) RETURNING {KEY_COLS}"
        ))
        .bind(new.id.to_string())
        .bind(new.user_id.to_string())
        .bind(&new.name)
        .bind(new.env.as_str())
        .bind(&new.key_hash)
        .bind(new.pepper_version)
        .bind(&new.display_prefix)
        .bind(&new.last4)
        .bind(new.spend_limit.map(|m| m.0))
        .bind(opt_ms(new.expires_at))
        .bind(at)
        .bind(at)
        .fetch_one(self.pool())
        .await?;
        rows::key(&row)
    }

    async fn key_for_auth(&self, key_hash: &[u8]) -> StoreResult<Option<KeyAuthRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS_K}, u.tier AS tier, u.status AS user_status, \
             u.max_credits_per_request_micros AS account_max_per_request_micros, \
             u.max_credits_per_hour_micros AS account_max_per_hour_micros, \
             u.requests_per_minute AS account_requests_per_minute, u.tokens_per_minute AS account_tokens_per_minute \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?"
        ))
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::Row;
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
        let rows =
            sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id"))
                .bind(user.to_string())
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(rows::key).collect()
    }

    async fn keys_by_prefix(&self, display_prefix: &str) -> StoreResult<Vec<KeyRecord>> {
        let rows =
            sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE display_prefix = ? ORDER BY created_at DESC"))
                .bind(display_prefix)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(rows::key).collect()
    }

    async fn set_key_state(&self, user: UserId, key: KeyId, state: KeyState) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let now = ms(OffsetDateTime::now_utc());
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET state = ?, state_changed_at = ? WHERE id = ? AND user_id = ? \
             RETURNING {KEY_COLS}"
        ))
        .bind(state.as_str())
        .bind(now)
        .bind(key.to_string())
        .bind(user.to_string())
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET max_credits_per_request_micros = ?, max_credits_per_hour_micros = ?, \
             spend_limit_micros = ? WHERE id = ? AND user_id = ? RETURNING {KEY_COLS}"
        ))
        .bind(caps.per_request.map(|m| m.0))
        .bind(caps.per_hour.map(|m| m.0))
        .bind(spend_limit.map(|m| m.0))
        .bind(key.to_string())
        .bind(user.to_string())
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
        let mut tx = self.begin_write().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(ms(*at))
            .bind(id.to_string())
            .bind(ms(*at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Tells every node's cache that this key changed.
async fn announce_key(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, record: &KeyRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO cache_events (scope, key_hash, user_id, created_at) \
         VALUES ('key', ?, ?, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
    )
    .bind(&record.key_hash)
    .bind(record.user_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
