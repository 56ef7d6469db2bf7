//! Usage rows on SQLite, written in batches.

use async_trait::async_trait;
use layers_domain::UserId;
use std::sync::OnceLock;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{UsageCursor, UsageRecord};
use crate::traits::UsageStore;

/// Rows per multi-row INSERT: 30 columns each stays far below SQLite's variable limit, and a
/// fixed size means one prepared statement, cached, for every full chunk.
pub(super) const ROWS_PER_STATEMENT: usize = 50;
const USAGE_COLS: &str = "id, request_id, user_id, key_id, model, provider, upstream_model, endpoint, \
     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, images, cost_micros, latency_ms, \
     status, error_code, streamed, usage_estimated, created_at, charged_micros, cache_write_tokens, held_micros, \
     shortfall_micros, fees_micros, rate_input, rate_output, rate_cached_input, rate_cache_write, rate_image";

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> StoreResult<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        // Full chunks share one cached statement; the remainder goes row by row through another.
        let mut chunks = batch.chunks_exact(ROWS_PER_STATEMENT);
        for chunk in &mut chunks {
            written += insert(chunk).execute(&mut *tx).await?.rows_affected();
        }
        for row in chunks.remainder() {
            written += insert(std::slice::from_ref(row)).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn usage_by_request(&self, user: UserId, request_id: &str) -> StoreResult<Option<UsageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = ? AND request_id = ? \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(user.to_string())
        .bind(request_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(rows::usage).transpose()
    }

    async fn recent_usage(
        &self,
        user: UserId,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>> {
        let (at, id) = before.map_or((i64::MAX, String::new()), |c| (ms(c.created_at), c.id.to_string()));
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = ? AND (created_at < ? OR (created_at = ? AND id < ?)) \
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(user.to_string())
        .bind(at)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::usage).collect()
    }
}

pub(super) fn insert(
    rows: &[UsageRecord],
) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'static>> {
    static CHUNK: OnceLock<String> = OnceLock::new();
    static SINGLE: OnceLock<String> = OnceLock::new();
    let sql = if rows.len() == ROWS_PER_STATEMENT {
        CHUNK.get_or_init(|| insert_sql(ROWS_PER_STATEMENT))
    } else {
        SINGLE.get_or_init(|| insert_sql(1))
    };
    let mut q = sqlx::query(sql.as_str());
    for r in rows {
        q = q
            .bind(r.id.to_string())
            .bind(r.request_id.clone())
            .bind(r.user_id.to_string())
            .bind(r.key_id.map(|k| k.to_string()))
            .bind(r.model.clone())
            .bind(r.provider.clone())
            .bind(r.upstream_model.clone())
            .bind(r.endpoint.clone())
            .bind(i64::from(r.usage.prompt_tokens))
            .bind(i64::from(r.usage.completion_tokens))
            .bind(i64::from(r.usage.cached_tokens))
            .bind(i64::from(r.usage.reasoning_tokens))
            .bind(i64::from(r.usage.images))
            .bind(r.cost.0)
            .bind(r.latency_ms)
            .bind(i64::from(r.status))
            .bind(r.error_code.clone())
            .bind(r.streamed)
            .bind(r.usage_estimated)
            .bind(ms(r.created_at))
            .bind(r.charged.0)
            .bind(i64::from(r.usage.cache_write_tokens))
            .bind(r.held.0)
            .bind(r.shortfall.0)
            .bind(r.fees.0)
            .bind(r.rates.input.micros_per_mtok())
            .bind(r.rates.output.micros_per_mtok())
            .bind(r.rates.cached_input.micros_per_mtok())
            .bind(r.rates.cache_write_input.micros_per_mtok())
            .bind(r.rates.per_image.0);
    }
    q
}

fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; 30].join(", "));
    format!("INSERT INTO usage_logs ({USAGE_COLS}) VALUES {} ON CONFLICT (id) DO NOTHING", vec![one; rows].join(", "))
}
