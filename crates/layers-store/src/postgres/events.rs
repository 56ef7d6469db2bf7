//! The cache-invalidation feed on PostgreSQL.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::rows;
use super::PgStore;
use crate::error::StoreResult;
use crate::records::CacheEvent;
use crate::traits::CacheEventStore;

#[async_trait]
impl CacheEventStore for PgStore {
    async fn cache_events_since(&self, since: OffsetDateTime) -> StoreResult<Vec<CacheEvent>> {
        let rows = sqlx::query(
            "SELECT id, scope, key_hash, user_id, created_at, reclaim_epoch FROM layers_cache_events_since($1)",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::cache_event).collect()
    }

    async fn db_now(&self) -> StoreResult<OffsetDateTime> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(self.pool()).await?)
    }
}
