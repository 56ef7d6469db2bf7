//! The audit log on SQLite.

use async_trait::async_trait;
use layers_domain::UserId;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::AuditEvent;
use crate::traits::AuditStore;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_logs (id, created_at, user_id, event_type, ip_address, user_agent, metadata, severity) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id.to_string())
        .bind(ms(e.created_at))
        .bind(e.user_id.map(|u| u.to_string()))
        .bind(&e.event_type)
        .bind(e.ip_address.map(|ip| ip.to_string()))
        .bind(&e.user_agent)
        .bind(e.metadata.to_string())
        .bind(e.severity.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn audit_events(&self, user: UserId, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, user_id, event_type, ip_address, user_agent, metadata, severity \
             FROM audit_logs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn system_audit_events(&self, event_type: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, user_id, event_type, ip_address, user_agent, metadata, severity \
             FROM audit_logs WHERE user_id IS NULL AND (?1 IS NULL OR event_type = ?1) \
             ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )
        .bind(event_type)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::audit).collect()
    }
}
