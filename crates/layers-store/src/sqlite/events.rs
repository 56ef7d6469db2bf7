//! The cache-invalidation feed on SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::rows::{self, from_ms, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::CacheEvent;
use crate::traits::CacheEventStore;

#[async_trait]
impl CacheEventStore for SqliteStore {
    async fn cache_events_since(&self, since: OffsetDateTime) -> StoreResult<Vec<CacheEvent>> {
        let rows = sqlx::query(
            "SELECT id, scope, key_hash, user_id, created_at, reclaim_epoch FROM cache_events WHERE created_at > ? ORDER BY id",
        )
        .bind(ms(since))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::cache_event).collect()
    }

    async fn db_now(&self) -> StoreResult<OffsetDateTime> {
        let now: i64 =
            sqlx::query_scalar("SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)").fetch_one(self.pool()).await?;
        Ok(from_ms(now))
    }
}
