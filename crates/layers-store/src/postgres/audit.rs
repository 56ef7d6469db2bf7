//! The audit log on PostgreSQL. Writes go through `layers_record_audit`, because some events
//! (failed authentication from an IP) belong to no user.

use async_trait::async_trait;
use layers_domain::UserId;

use super::rows;
use super::PgStore;
use crate::error::StoreResult;
use crate::records::{AuditEvent, AuditFilter};
use crate::traits::AuditStore;

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        sqlx::query("SELECT layers_record_audit($1, $2, $3, $4, $5::inet, $6, $7, $8)")
            .bind(e.id)
            .bind(e.created_at)
            .bind(e.user_id.map(|u| u.0))
            .bind(&e.event_type)
            .bind(e.ip_address.map(|ip| ip.to_string()))
            .bind(&e.user_agent)
            .bind(&e.metadata)
            .bind(e.severity.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn audit_events(&self, user: UserId, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(
            "SELECT id, created_at, user_id, event_type, ip_address::text AS ip_address, user_agent, metadata, \
             severity FROM audit_logs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn system_audit_events(&self, event_type: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, created_at, user_id, event_type, ip_address::text AS ip_address, user_agent, metadata, \
             severity FROM layers_system_audit($1, $2)",
        )
        .bind(event_type)
        .bind(i64::from(limit).min(i64::from(i32::MAX)) as i32)
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
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "SELECT id, created_at, user_id, event_type, ip_address::text AS ip_address, user_agent, metadata, \
             severity FROM audit_logs WHERE user_id = ",
        );
        q.push_bind(user.0);
        if !filter.types.is_empty() {
            q.push(" AND event_type = ANY(").push_bind(filter.types.clone()).push(")");
        }
        if let Some(since) = filter.since {
            q.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(before) = filter.before {
            q.push(" AND created_at < ").push_bind(before);
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
        let mut tx = self.begin_as(user).await?;
        let rows = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(rows::audit).collect()
    }
}
