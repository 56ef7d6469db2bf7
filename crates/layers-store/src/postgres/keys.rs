//! API keys on PostgreSQL.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{ExpiringKey, KeyAuthRecord, KeyLimits, KeyRecord, KeyState, NewKey, NewSecret, UserStatus};
use crate::traits::KeyStore;

const KEY_COLS: &str = "id, user_id, name, env, key_hash, pepper_version, display_prefix, \
     last4, state, spend_limit_micros, max_credits_per_request_micros, max_credits_per_hour_micros, spent_micros, \
     expires_at, created_at, last_used_at, limit_period, previous_hash, previous_pepper_version, previous_prefix, \
     previous_last4, previous_valid_until, rotated_at";

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, new: &NewKey) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(new.user_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, user_id, name, env, key_hash, pepper_version, display_prefix, last4, \
             state, spend_limit_micros, expires_at, created_at, state_changed_at, limit_period) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11, $11, $12) RETURNING {KEY_COLS}"
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
        .bind(new.limit_period.as_str())
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
        self.keys_of_owners(owners).await
    }

    async fn set_key_state(&self, user: UserId, key: KeyId, state: KeyState) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(user).await?;
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET state = $1, state_changed_at = now(), \
             previous_hash = CASE WHEN $1 = 'active' THEN previous_hash END, \
             previous_pepper_version = CASE WHEN $1 = 'active' THEN previous_pepper_version END, \
             previous_prefix = CASE WHEN $1 = 'active' THEN previous_prefix END, \
             previous_last4 = CASE WHEN $1 = 'active' THEN previous_last4 END, \
             previous_valid_until = CASE WHEN $1 = 'active' THEN previous_valid_until END \
             WHERE id = $2 AND user_id = $3 AND state <> 'deleted' RETURNING {KEY_COLS}"
        ))
        .bind(state.as_str())
        .bind(key.0)
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await?;
        let record = rows::key(&row)?;
        // Both secrets: the one a rotation replaced may just have been forgotten.
        announce_key(&mut tx, &before).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_key_limits(&self, user: UserId, key: KeyId, limits: KeyLimits) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET max_credits_per_request_micros = $1, max_credits_per_hour_micros = $2, \
             spend_limit_micros = $3, limit_period = $6 WHERE id = $4 AND user_id = $5 RETURNING {KEY_COLS}"
        ))
        .bind(limits.caps.per_request.map(|m| m.0))
        .bind(limits.caps.per_hour.map(|m| m.0))
        .bind(limits.spend_limit.map(|m| m.0))
        .bind(key.0)
        .bind(user.0)
        .bind(limits.period.as_str())
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
        let mut tx = self.begin_as(user).await?;
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET previous_hash = key_hash, previous_pepper_version = pepper_version, \
             previous_prefix = display_prefix, previous_last4 = last4, previous_valid_until = $1, \
             key_hash = $2, pepper_version = $3, display_prefix = $4, last4 = $5, rotated_at = $6, \
             expiry_reminded = NULL WHERE id = $7 AND user_id = $8 RETURNING {KEY_COLS}"
        ))
        .bind(old_valid_until)
        .bind(&secret.key_hash)
        .bind(secret.pepper_version)
        .bind(&secret.display_prefix)
        .bind(&secret.last4)
        .bind(at)
        .bind(key.0)
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await?;
        let record = rows::key(&row)?;
        announce_key(&mut tx, &before).await?;
        if let Some(gone) = &before.previous {
            announce_hash(&mut tx, &gone.key_hash, user).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    async fn key_spend_days(&self, user: UserId, from_day: i64) -> StoreResult<Vec<(KeyId, i64, MicroCredits)>> {
        let mut tx = self.begin_as(user).await?;
        let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "SELECT key_id, day, spent_micros FROM key_spend_days WHERE user_id = $1 AND day >= $2 ORDER BY day",
        )
        .bind(user.0)
        .bind(from_day)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(key, day, spent)| (KeyId(key), day, MicroCredits(spent))).collect())
    }

    async fn keys_expiring(&self, now: OffsetDateTime, before: OffsetDateTime) -> StoreResult<Vec<ExpiringKey>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, display_prefix, last4, expires_at, expiry_reminded \
             FROM layers_keys_expiring($1, $2)",
        )
        .bind(now)
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::expiring).collect()
    }

    async fn claim_expiry_reminder(&self, user: UserId, key: KeyId, days: i32) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query(
            "UPDATE api_keys SET expiry_reminded = $1 WHERE id = $2 AND user_id = $3 \
             AND (expiry_reminded IS NULL OR expiry_reminded > $1)",
        )
        .bind(days)
        .bind(key.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_previous_secret(&self, user: UserId, key: KeyId) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_as(user).await?;
        let before = live_key(&mut tx, user, key).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET previous_hash = NULL, previous_pepper_version = NULL, previous_prefix = NULL, \
             previous_last4 = NULL, previous_valid_until = NULL WHERE id = $1 AND user_id = $2 RETURNING {KEY_COLS}"
        ))
        .bind(key.0)
        .bind(user.0)
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
        let ids: Vec<Uuid> = used.iter().map(|(k, _)| k.0).collect();
        let times: Vec<OffsetDateTime> = used.iter().map(|(_, t)| *t).collect();
        sqlx::query("SELECT layers_touch_keys($1, $2)").bind(&ids).bind(&times).execute(self.pool()).await?;
        Ok(())
    }

    async fn key_owner(&self, key: KeyId) -> StoreResult<Option<UserId>> {
        let owner: Option<Uuid> =
            sqlx::query_scalar("SELECT layers_key_owner($1)").bind(key.0).fetch_one(self.pool()).await?;
        Ok(owner.map(UserId))
    }

    async fn keys_on_old_pepper(&self, current: i32) -> StoreResult<Vec<KeyRecord>> {
        let owners: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT id, user_id FROM layers_keys_on_old_pepper($1)")
            .bind(current)
            .fetch_all(self.pool())
            .await?;
        self.keys_of_owners(owners).await
    }
}

impl PgStore {
    /// The keys a `SECURITY DEFINER` listing named as (key, owner), each read under its owner's
    /// row-level security.
    async fn keys_of_owners(&self, owners: Vec<(Uuid, Uuid)>) -> StoreResult<Vec<KeyRecord>> {
        let mut found = Vec::with_capacity(owners.len());
        for (key_id, user_id) in owners {
            let keys = self.keys_of_user(UserId(user_id)).await?;
            found.extend(keys.into_iter().filter(|k| k.id.0 == key_id));
        }
        Ok(found)
    }
}

/// The user's key, locked, unless it is deleted; `NotFound` otherwise.
async fn live_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    user: UserId,
    key: KeyId,
) -> StoreResult<KeyRecord> {
    let row = sqlx::query(&format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE id = $1 AND user_id = $2 AND state <> 'deleted' FOR UPDATE"
    ))
    .bind(key.0)
    .bind(user.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound { entity: "api key" })?;
    rows::key(&row)
}

/// Tells every node's cache that this key changed (under each secret it is known by).
async fn announce_key(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, record: &KeyRecord) -> StoreResult<()> {
    announce_hash(tx, &record.key_hash, record.user_id).await?;
    if let Some(previous) = &record.previous {
        announce_hash(tx, &previous.key_hash, record.user_id).await?;
    }
    Ok(())
}

async fn announce_hash(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    hash: &[u8],
    user: UserId,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('key', $1, $2)")
        .bind(hash)
        .bind(user.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
