//! The audit log on SQLite.

use async_trait::async_trait;
use layers_domain::UserId;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{AuditEvent, AuditFilter};
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

    async fn audit_events_filtered(
        &self,
        user: UserId,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, created_at, user_id, event_type, ip_address, user_agent, metadata, severity \
             FROM audit_logs WHERE user_id = ",
        );
        q.push_bind(user.to_string());
        if !filter.types.is_empty() {
            q.push(" AND event_type IN (");
            let mut list = q.separated(", ");
            for t in &filter.types {
                list.push_bind(t.as_str());
            }
            q.push(")");
        }
        if let Some(since) = filter.since {
            q.push(" AND created_at >= ").push_bind(ms(since));
        }
        if let Some(before) = filter.before {
            q.push(" AND created_at < ").push_bind(ms(before));
        }
        q.push(" ORDER BY created_at DESC, rowid DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(rows::audit).collect()
    }
}
