//! Passwords, confirmed addresses and e-mailed links on SQLite.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{Credentials, EmailPurpose, EmailToken, Session};
use crate::traits::IdentityStore;

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
}
