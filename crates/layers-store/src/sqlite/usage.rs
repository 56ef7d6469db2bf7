//! Usage rows on SQLite, written in batches.

use async_trait::async_trait;
use layers_domain::UserId;
use sqlx::QueryBuilder;
use time::OffsetDateTime;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::UsageRecord;
use crate::traits::UsageStore;

/// Rows per INSERT statement: 20 columns each stays far below SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 400;
const USAGE_COLS: &str = "id, request_id, user_id, key_id, model, provider, upstream_model, endpoint, \
     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, images, cost_micros, latency_ms, \
     status, error_code, streamed, usage_estimated, created_at";

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> StoreResult<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(format!("INSERT INTO usage_logs ({USAGE_COLS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id.to_string())
                    .push_bind(&r.request_id)
                    .push_bind(r.user_id.to_string())
                    .push_bind(r.key_id.map(|k| k.to_string()))
                    .push_bind(&r.model)
                    .push_bind(&r.provider)
                    .push_bind(&r.upstream_model)
                    .push_bind(&r.endpoint)
                    .push_bind(i64::from(r.usage.prompt_tokens))
                    .push_bind(i64::from(r.usage.completion_tokens))
                    .push_bind(i64::from(r.usage.cached_tokens))
                    .push_bind(i64::from(r.usage.reasoning_tokens))
                    .push_bind(i64::from(r.usage.images))
                    .push_bind(r.cost.0)
                    .push_bind(r.latency_ms)
                    .push_bind(i64::from(r.status))
                    .push_bind(&r.error_code)
                    .push_bind(r.streamed)
                    .push_bind(r.usage_estimated)
                    .push_bind(ms(r.created_at));
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            written += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn recent_usage(
        &self,
        user: UserId,
        limit: u32,
        before: Option<OffsetDateTime>,
    ) -> StoreResult<Vec<UsageRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = ? AND created_at < ? \
             ORDER BY created_at DESC, rowid DESC LIMIT ?"
        ))
        .bind(user.to_string())
        .bind(before.map(ms).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::usage).collect()
    }
}
