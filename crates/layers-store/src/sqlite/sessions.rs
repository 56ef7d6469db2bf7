//! Dashboard sessions on SQLite (only token hashes are stored).

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::Session;
use crate::traits::SessionStore;

pub(super) const SESSION_COLS: &str =
    "id, user_id, token_hash, created_at, authenticated_at, last_seen_at, expires_at, \
     revoked_at, ip_address, user_agent";

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"))
            .bind(s.id.to_string())
            .bind(s.user_id.to_string())
            .bind(&s.token_hash)
            .bind(ms(s.created_at))
            .bind(ms(s.authenticated_at))
            .bind(ms(s.last_seen_at))
            .bind(ms(s.expires_at))
            .bind(s.ip_address.map(|ip| ip.to_string()))
            .bind(&s.user_agent)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let row =
            sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = ? AND revoked_at IS NULL"))
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?;
        row.as_ref().map(rows::session).transpose()
    }

    async fn touch_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id = ? AND user_id = ?")
            .bind(ms(at))
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn revoke_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
            .bind(ms(at))
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn revoke_all_sessions(&self, user: UserId, at: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(ms(at))
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_every_session(&self, at: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL")
            .bind(ms(at))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
