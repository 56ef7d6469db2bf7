//! Passwords, confirmed addresses and e-mailed links on PostgreSQL.

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::StoreResult;
use crate::records::{Credentials, EmailPurpose, EmailToken, Session};
use crate::traits::IdentityStore;

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
}
