//! Dashboard sessions on PostgreSQL (only token hashes are stored).

use async_trait::async_trait;
use layers_domain::UserId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::StoreResult;
use crate::records::Session;
use crate::traits::SessionStore;

pub(super) const SESSION_COLS: &str =
    "id, user_id, token_hash, created_at, authenticated_at, last_seen_at, expires_at, \
     revoked_at, ip_address::text AS ip_address, user_agent";

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        let mut tx = self.begin_as(s.user_id).await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, created_at, authenticated_at, last_seen_at, expires_at, \
             revoked_at, ip_address, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8::inet, $9)",
        )
        .bind(s.id)
        .bind(s.user_id.0)
        .bind(&s.token_hash)
        .bind(s.created_at)
        .bind(s.authenticated_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.ip_address.map(|ip| ip.to_string()))
        .bind(&s.user_agent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLS} FROM layers_session_by_token_hash($1)"))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::session).transpose()
    }

    async fn touch_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND user_id = $3")
            .bind(at)
            .bind(id)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_session(&self, user: UserId, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_all_sessions(&self, user: UserId, at: OffsetDateTime) -> StoreResult<u64> {
        let mut tx = self.begin_as(user).await?;
        let done = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn revoke_every_session(&self, at: OffsetDateTime) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT layers_revoke_every_session($1)").bind(at).fetch_one(self.pool()).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
