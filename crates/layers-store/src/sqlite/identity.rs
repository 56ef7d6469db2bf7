//! Passwords, confirmed addresses and e-mailed links on SQLite.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{Credentials, EmailPurpose, EmailToken, Session, TwoFactor};
use crate::traits::IdentityStore;
use sqlx::Row;

const CREDENTIAL_COLS: &str = "id, status, password_hash, email_verified_at";
const TOKEN_COLS: &str = "token_hash, user_id, purpose, new_email, created_at, expires_at";

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>> {
        let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLS} FROM users WHERE email = ?"))
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::credentials).transpose()
    }

    async fn credentials(&self, user: UserId) -> StoreResult<Option<Credentials>> {
        let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLS} FROM users WHERE id = ?"))
            .bind(user.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::credentials).transpose()
    }

    async fn set_password_hash(&self, user: UserId, hash: &str, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(hash)
            .bind(ms(at))
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn mark_email_verified(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE users SET email_verified_at = coalesce(email_verified_at, ?), updated_at = ? WHERE id = ?")
            .bind(ms(at))
            .bind(ms(at))
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn set_email(&self, user: UserId, email: &str, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE users SET email = ?, email_verified_at = ?, updated_at = ? WHERE id = ?")
            .bind(email)
            .bind(ms(at))
            .bind(ms(at))
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn create_email_token(&self, t: &EmailToken) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO email_tokens ({TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?)"))
            .bind(&t.token_hash)
            .bind(t.user_id.to_string())
            .bind(t.purpose.as_db())
            .bind(&t.new_email)
            .bind(ms(t.created_at))
            .bind(ms(t.expires_at))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn use_email_token(
        &self,
        token_hash: &[u8],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<EmailToken>> {
        let row = sqlx::query(&format!(
            "UPDATE email_tokens SET used_at = ? \
             WHERE token_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ? RETURNING {TOKEN_COLS}"
        ))
        .bind(ms(now))
        .bind(token_hash)
        .bind(purpose.as_db())
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::email_token).transpose()
    }

    async fn revoke_email_tokens(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE email_tokens SET used_at = ? WHERE user_id = ? AND used_at IS NULL")
            .bind(ms(at))
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn sessions_of_user(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM sessions WHERE user_id = ? AND revoked_at IS NULL ORDER BY last_seen_at DESC",
            super::sessions::SESSION_COLS
        ))
        .bind(user.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::session).collect()
    }

    async fn two_factor(&self, user: UserId) -> StoreResult<Option<TwoFactor>> {
        let row = sqlx::query("SELECT secret_enc, enabled_at, last_step FROM two_factor WHERE user_id = ?")
            .bind(user.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(TwoFactor {
                secret_enc: r.try_get("secret_enc")?,
                enabled_at: r.try_get::<Option<i64>, _>("enabled_at")?.map(rows::from_ms),
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    async fn set_pending_two_factor(&self, user: UserId, secret_enc: &[u8], at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO two_factor (user_id, secret_enc, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, \
             last_step = NULL WHERE two_factor.enabled_at IS NULL",
        )
        .bind(user.to_string())
        .bind(secret_enc)
        .bind(ms(at))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enable_two_factor(
        &self,
        user: UserId,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE two_factor SET enabled_at = ?, last_step = ? WHERE user_id = ? AND enabled_at IS NULL")
            .bind(ms(at))
            .bind(step)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user.to_string()).execute(&mut *tx).await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)")
                .bind(user.to_string())
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE two_factor SET last_step = ? WHERE user_id = ? AND enabled_at IS NOT NULL \
             AND (last_step IS NULL OR last_step < ?)",
        )
        .bind(step)
        .bind(user.to_string())
        .bind(step)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(&self, user: UserId, code_hash: &[u8], at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
        )
        .bind(ms(at))
        .bind(user.to_string())
        .bind(code_hash)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unused_recovery_codes(&self, user: UserId) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL")
            .bind(user.to_string())
            .fetch_one(self.pool())
            .await?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn disable_two_factor(&self, user: UserId) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user.to_string()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM two_factor WHERE user_id = ?").bind(user.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erase_personal_data(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        let id = user.to_string();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE users SET email = 'deleted+' || id || '@deleted.invalid', password_hash = NULL, \
             email_verified_at = NULL, status = 'suspended', updated_at = ? WHERE id = ?",
        )
        .bind(ms(at))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        for table in ["sessions", "email_tokens", "recovery_codes", "two_factor", "identities", "alert_settings"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?")).bind(&id).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_logs SET ip_address = NULL, user_agent = NULL WHERE user_id = ?")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(super::accounts::INSERT_ACCOUNT_EVENT).bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>> {
        let id: Option<String> = sqlx::query_scalar("SELECT user_id FROM identities WHERE issuer = ? AND subject = ?")
            .bind(issuer)
            .bind(subject)
            .fetch_optional(self.pool())
            .await?;
        id.map(|s| {
            uuid::Uuid::parse_str(&s).map(UserId).map_err(|_| crate::error::StoreError::Corrupt { column: "user_id" })
        })
        .transpose()
    }

    async fn identities_of(&self, user: UserId) -> StoreResult<Vec<(String, String, OffsetDateTime)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT issuer, subject, created_at FROM identities WHERE user_id = ? ORDER BY created_at")
                .bind(user.to_string())
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(i, s, at)| (i, s, rows::from_ms(at))).collect())
    }

    async fn link_identity(&self, user: UserId, issuer: &str, subject: &str, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO identities (issuer, subject, user_id, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (issuer, subject) DO NOTHING",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user.to_string())
        .bind(ms(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
