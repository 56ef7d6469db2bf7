//! API keys on SQLite.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use time::OffsetDateTime;

use super::rows::{self, ms, opt_ms};
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{ExpiringKey, KeyAuthRecord, KeyLimits, KeyRecord, KeyState, NewKey, NewSecret, UserStatus};
use crate::traits::KeyStore;

const KEY_COLS: &str = "id, user_id, name, env, key_hash, pepper_version, display_prefix, \
     last4, state, spend_limit_micros, max_credits_per_request_micros, max_credits_per_hour_micros, spent_micros, \
     expires_at, created_at, last_used_at, limit_period, previous_hash, previous_pepper_version, previous_prefix, \
     previous_last4, previous_valid_until, rotated_at";
/// The same columns, qualified for joins with `users`.
const KEY_COLS_K: &str = "k.id, k.user_id, k.name, k.env, k.key_hash, k.pepper_version, k.display_prefix, \
     k.last4, k.state, k.spend_limit_micros, k.max_credits_per_request_micros, k.max_credits_per_hour_micros, \
     k.spent_micros, k.expires_at, k.created_at, k.last_used_at, k.limit_period, k.previous_hash, \
     k.previous_pepper_version, k.previous_prefix, k.previous_last4, k.previous_valid_until, k.rotated_at";

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, new: &NewKey) -> StoreResult<KeyRecord> {
        let at = ms(new.created_at);
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, user_id, name, env, key_hash, pepper_version, display_prefix, last4, \
             state, spend_limit_micros, expires_at, created_at, state_changed_at, limit_period) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?) RETURNING {KEY_COLS}"
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
        .bind(new.limit_period.as_str())
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
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ? \
             UNION ALL SELECT {KEY_COLS_K}, u.tier, u.status, u.max_credits_per_request_micros, \
             u.max_credits_per_hour_micros, u.requests_per_minute, u.tokens_per_minute \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.previous_hash = ? LIMIT 1"
        ))
        .bind(key_hash)
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
            sqlx::query(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE display_prefix = ?1 OR previous_prefix = ?1 ORDER BY created_at DESC"
            ))
                .bind(display_prefix)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(rows::key).collect()
    }

    async fn set_key_state(&self, user: UserId, key: KeyId, state: KeyState) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let now = ms(OffsetDateTime::now_utc());
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET state = ?1, state_changed_at = ?2, \
             previous_hash = CASE WHEN ?1 = 'active' THEN previous_hash END, \
             previous_pepper_version = CASE WHEN ?1 = 'active' THEN previous_pepper_version END, \
             previous_prefix = CASE WHEN ?1 = 'active' THEN previous_prefix END, \
             previous_last4 = CASE WHEN ?1 = 'active' THEN previous_last4 END, \
             previous_valid_until = CASE WHEN ?1 = 'active' THEN previous_valid_until END \
             WHERE id = ?3 AND user_id = ?4 AND state <> 'deleted' RETURNING {KEY_COLS}"
        ))
        .bind(state.as_str())
        .bind(now)
        .bind(key.to_string())
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let record = rows::key(&row)?;
        // Both secrets: the one a rotation replaced may just have been forgotten.
        announce_key(&mut tx, &before).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_key_limits(&self, user: UserId, key: KeyId, limits: KeyLimits) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET max_credits_per_request_micros = ?, max_credits_per_hour_micros = ?, \
             spend_limit_micros = ?, limit_period = ? WHERE id = ? AND user_id = ? RETURNING {KEY_COLS}"
        ))
        .bind(limits.caps.per_request.map(|m| m.0))
        .bind(limits.caps.per_hour.map(|m| m.0))
        .bind(limits.spend_limit.map(|m| m.0))
        .bind(limits.period.as_str())
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

    async fn rotate_key(
        &self,
        user: UserId,
        key: KeyId,
        secret: &NewSecret,
        old_valid_until: OffsetDateTime,
        at: OffsetDateTime,
    ) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET previous_hash = key_hash, previous_pepper_version = pepper_version, \
             previous_prefix = display_prefix, previous_last4 = last4, previous_valid_until = ?, \
             key_hash = ?, pepper_version = ?, display_prefix = ?, last4 = ?, rotated_at = ?, expiry_reminded = NULL \
             WHERE id = ? AND user_id = ? RETURNING {KEY_COLS}"
        ))
        .bind(ms(old_valid_until))
        .bind(&secret.key_hash)
        .bind(secret.pepper_version)
        .bind(&secret.display_prefix)
        .bind(&secret.last4)
        .bind(ms(at))
        .bind(key.to_string())
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let record = rows::key(&row)?;
        // Every node drops the old secret (now valid only until the overlap ends) and the one
        // an earlier rotation retired (now gone).
        announce_key(&mut tx, &before).await?;
        if let Some(gone) = &before.previous {
            announce_hash(&mut tx, &gone.key_hash, user).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    async fn key_spend_days(&self, user: UserId, from_day: i64) -> StoreResult<Vec<(KeyId, i64, MicroCredits)>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, day, spent_micros FROM key_spend_days WHERE user_id = ? AND day >= ? ORDER BY day",
        )
        .bind(user.to_string())
        .bind(from_day)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(key, day, spent)| {
                let key = key.parse().map_err(|_| StoreError::Corrupt { column: "key_id" })?;
                Ok((KeyId(key), day, MicroCredits(spent)))
            })
            .collect()
    }

    async fn keys_expiring(&self, now: OffsetDateTime, before: OffsetDateTime) -> StoreResult<Vec<ExpiringKey>> {
        let rows = sqlx::query(
            "SELECT k.id, k.user_id, k.name, k.display_prefix, k.last4, k.expires_at, k.expiry_reminded \
             FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.expires_at IS NOT NULL AND k.expires_at > ? AND k.expires_at <= ? \
               AND (k.expiry_reminded IS NULL OR k.expiry_reminded > 1) \
               AND k.state = 'active' AND u.status = 'active' ORDER BY k.expires_at LIMIT 1000",
        )
        .bind(ms(now))
        .bind(ms(before.min(now + time::Duration::days(8))))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::expiring).collect()
    }

    async fn claim_expiry_reminder(&self, user: UserId, key: KeyId, days: i32) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET expiry_reminded = ?1 WHERE id = ?2 AND user_id = ?3 \
             AND (expiry_reminded IS NULL OR expiry_reminded > ?1)",
        )
        .bind(days)
        .bind(key.to_string())
        .bind(user.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_previous_secret(&self, user: UserId, key: KeyId) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET previous_hash = NULL, previous_pepper_version = NULL, previous_prefix = NULL, \
             previous_last4 = NULL, previous_valid_until = NULL WHERE id = ? AND user_id = ? RETURNING {KEY_COLS}"
        ))
        .bind(key.to_string())
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
        announce_key(&mut tx, &before).await?;
        tx.commit().await?;
        rows::key(&row)
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

    async fn key_owner(&self, key: KeyId) -> StoreResult<Option<UserId>> {
        let owner: Option<String> = sqlx::query_scalar("SELECT user_id FROM api_keys WHERE id = ?")
            .bind(key.to_string())
            .fetch_optional(self.pool())
            .await?;
        owner.map(|s| s.parse().map(UserId).map_err(|_| StoreError::Corrupt { column: "user_id" })).transpose()
    }

    async fn keys_on_old_pepper(&self, current: i32) -> StoreResult<Vec<KeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE state <> 'deleted' AND pepper_version < ? ORDER BY created_at, id"
        ))
        .bind(current)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::key).collect()
    }
}

/// The user's key, unless it is deleted; `NotFound` otherwise.
async fn live_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    user: UserId,
    key: KeyId,
) -> StoreResult<KeyRecord> {
    let row =
        sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ? AND user_id = ? AND state <> 'deleted'"))
            .bind(key.to_string())
            .bind(user.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound { entity: "api key" })?;
    rows::key(&row)
}

/// Tells every node's cache that this key changed (under each secret it is known by).
async fn announce_key(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, record: &KeyRecord) -> StoreResult<()> {
    announce_hash(tx, &record.key_hash, record.user_id).await?;
    if let Some(previous) = &record.previous {
        announce_hash(tx, &previous.key_hash, record.user_id).await?;
    }
    Ok(())
}

async fn announce_hash(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    hash: &[u8],
    user: UserId,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO cache_events (scope, key_hash, user_id, created_at) \
         VALUES ('key', ?, ?, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
    )
    .bind(hash)
    .bind(user.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
