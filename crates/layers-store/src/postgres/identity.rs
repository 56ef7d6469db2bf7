//! Passwords, confirmed addresses and e-mailed links on PostgreSQL.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::StoreResult;
use crate::records::{Credentials, EmailPurpose, EmailToken, Session, TwoFactor};
use crate::traits::IdentityStore;
use sqlx::Row;

const CREDENTIAL_COLS: &str = "id, status, password_hash, email_verified_at";
const TOKEN_COLS: &str = "token_hash, user_id, purpose, new_email, created_at, expires_at";

#[async_trait]
impl IdentityStore for PgStore {
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT layers_user_id_by_email($1)").bind(email).fetch_one(self.pool()).await?;
        match id {
            Some(id) => self.credentials(UserId(id)).await,
            None => Ok(None),
        }
    }

    async fn credentials(&self, user: UserId) -> StoreResult<Option<Credentials>> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLS} FROM users WHERE id = $1"))
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(rows::credentials).transpose()
    }

    async fn set_password_hash(&self, user: UserId, hash: &str, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(at)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_email_verified(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, $1), updated_at = $1 WHERE id = $2",
        )
        .bind(at)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_email(&self, user: UserId, email: &str, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE users SET email = $1, email_verified_at = $2, updated_at = $2 WHERE id = $3")
            .bind(email)
            .bind(at)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_email_token(&self, t: &EmailToken) -> StoreResult<()> {
        let mut tx = self.begin_as(t.user_id).await?;
        sqlx::query(&format!("INSERT INTO email_tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(&t.token_hash)
            .bind(t.user_id.0)
            .bind(t.purpose.as_db())
            .bind(&t.new_email)
            .bind(t.created_at)
            .bind(t.expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_email_token(
        &self,
        token_hash: &[u8],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<EmailToken>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM layers_use_email_token($1, $2, $3)"))
            .bind(token_hash)
            .bind(purpose.as_db())
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::email_token).transpose()
    }

    async fn revoke_email_tokens(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
            .bind(at)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sessions_of_user(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY last_seen_at DESC",
            super::sessions::SESSION_COLS
        ))
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::session).collect()
    }

    async fn two_factor(&self, user: UserId) -> StoreResult<Option<TwoFactor>> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query("SELECT secret_enc, enabled_at, last_step FROM two_factor WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(TwoFactor {
                secret_enc: r.try_get("secret_enc")?,
                enabled_at: r.try_get("enabled_at")?,
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    async fn set_pending_two_factor(&self, user: UserId, secret_enc: &[u8], at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query(
            "INSERT INTO two_factor (user_id, secret_enc, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, \
             last_step = NULL WHERE two_factor.enabled_at IS NULL",
        )
        .bind(user.0)
        .bind(secret_enc)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enable_two_factor(
        &self,
        user: UserId,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE two_factor SET enabled_at = $1, last_step = $2 WHERE user_id = $3 AND enabled_at IS NULL")
            .bind(at)
            .bind(step)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user.0).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])")
            .bind(user.0)
            .bind(recovery_hashes)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query(
            "UPDATE two_factor SET last_step = $1 WHERE user_id = $2 AND enabled_at IS NOT NULL \
             AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(&self, user: UserId, code_hash: &[u8], at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(at)
        .bind(user.0)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unused_recovery_codes(&self, user: UserId) -> StoreResult<u32> {
        let mut tx = self.begin_as(user).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
            .bind(user.0)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn disable_two_factor(&self, user: UserId) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user.0).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM two_factor WHERE user_id = $1").bind(user.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erase_personal_data(&self, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("SELECT layers_erase_personal_data($1, $2)").bind(user.0).bind(at).execute(&mut *tx).await?;
        // Alert settings hold the webhook address the person chose.
        sqlx::query("DELETE FROM alert_settings WHERE user_id = $1").bind(user.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>> {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT layers_user_by_identity($1, $2)")
            .bind(issuer)
            .bind(subject)
            .fetch_one(self.pool())
            .await?;
        Ok(id.map(UserId))
    }

    async fn identities_of(&self, user: UserId) -> StoreResult<Vec<(String, String, OffsetDateTime)>> {
        let mut tx = self.begin_as(user).await?;
        let rows: Vec<(String, String, OffsetDateTime)> =
            sqlx::query_as("SELECT issuer, subject, created_at FROM identities WHERE user_id = $1 ORDER BY created_at")
                .bind(user.0)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn link_identity(&self, user: UserId, issuer: &str, subject: &str, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query(
            "INSERT INTO identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issuer, subject) DO NOTHING",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user.0)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
