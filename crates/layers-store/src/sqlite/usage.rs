//! Usage rows on SQLite, written in batches.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::sync::OnceLock;
use uuid::Uuid;

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::StoreResult;
use crate::records::{StatusClass, UsageCursor, UsageFilter, UsageRecord, UsageSummary, UsageTotals};
use crate::traits::UsageStore;

/// Rows per multi-row INSERT: 32 columns each stays far below SQLite's variable limit, and a
/// fixed size means one prepared statement, cached, for every full chunk.
pub(super) const ROWS_PER_STATEMENT: usize = 50;
const USAGE_COLS: &str = "id, request_id, user_id, key_id, model, provider, upstream_model, endpoint, \
     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, images, cost_micros, latency_ms, \
     status, error_code, streamed, usage_estimated, created_at, charged_micros, cache_write_tokens, held_micros, \
     shortfall_micros, fees_micros, rate_input, rate_output, rate_cached_input, rate_cache_write, rate_image, \
     app_title, app_origin";

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

    async fn usage_page(
        &self,
        user: UserId,
        filter: &UsageFilter,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {USAGE_COLS} FROM usage_logs"));
        push_filter(&mut q, user, filter);
        if let Some(c) = before {
            let at = ms(c.created_at);
            q.push(" AND (created_at < ").push_bind(at).push(" OR (created_at = ").push_bind(at);
            q.push(" AND id < ").push_bind(c.id.to_string()).push("))");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(rows::usage).collect()
    }

    async fn usage_summary(&self, user: UserId, filter: &UsageFilter) -> StoreResult<UsageSummary> {
        let totals = "COUNT(*) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt, \
                      COALESCE(SUM(completion_tokens), 0) AS completion, COALESCE(SUM(charged_micros), 0) AS charged";
        let group = |by: &str, order: &str, limit: Option<u32>| {
            let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {by} AS g, {totals} FROM usage_logs"));
            push_filter(&mut q, user, filter);
            q.push(format!(" GROUP BY g ORDER BY {order}"));
            if let Some(n) = limit {
                q.push(" LIMIT ").push_bind(i64::from(n));
            }
            q
        };
        let mut summary = UsageSummary::default();
        let mut all = QueryBuilder::<Sqlite>::new(format!("SELECT {totals} FROM usage_logs"));
        push_filter(&mut all, user, filter);
        summary.total = totals_of(&all.build().fetch_one(self.pool()).await?)?;
        for row in group("created_at / 86400000", "g", None).build().fetch_all(self.pool()).await? {
            summary.by_day.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("model", "charged DESC, requests DESC, g", Some(50)).build().fetch_all(self.pool()).await? {
            summary.by_model.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("provider", "charged DESC, requests DESC, g", Some(50)).build().fetch_all(self.pool()).await? {
            summary.by_provider.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("key_id", "charged DESC, requests DESC, g", Some(100)).build().fetch_all(self.pool()).await? {
            let key: Option<String> = row.try_get("g")?;
            let key = key.and_then(|k| Uuid::parse_str(&k).ok()).map(KeyId);
            summary.by_key.push((key, totals_of(&row)?));
        }
        Ok(summary)
    }

    async fn usage_row(&self, user: UserId, id: Uuid) -> StoreResult<Option<UsageRecord>> {
        let row = sqlx::query(&format!("SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = ? AND id = ?"))
            .bind(user.to_string())
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(rows::usage).transpose()
    }

    async fn spend_by_model(
        &self,
        user: UserId,
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> StoreResult<Vec<(String, layers_domain::MicroCredits)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model, COALESCE(SUM(charged_micros), 0) FROM usage_logs \
             WHERE user_id = ? AND created_at >= ? AND created_at < ? GROUP BY model",
        )
        .bind(user.to_string())
        .bind(ms(from))
        .bind(ms(until))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(m, c)| (m, layers_domain::MicroCredits(c))).collect())
    }

    async fn prune_usage(&self, before: time::OffsetDateTime, limit: u32) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM usage_logs WHERE rowid IN \
             (SELECT rowid FROM usage_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(ms(before))
        .bind(i64::from(limit))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// `WHERE` for the user's rows the filter selects.
fn push_filter<'a>(q: &mut QueryBuilder<'a, Sqlite>, user: UserId, f: &'a UsageFilter) {
    q.push(" WHERE user_id = ").push_bind(user.to_string());
    if let Some(key) = f.key {
        q.push(" AND key_id = ").push_bind(key.to_string());
    }
    if let Some(model) = &f.model {
        q.push(" AND model = ").push_bind(model.as_str());
    }
    if let Some(provider) = &f.provider {
        q.push(" AND provider = ").push_bind(provider.as_str());
    }
    match f.status {
        Some(StatusClass::Ok) => q.push(" AND status BETWEEN 200 AND 299"),
        Some(StatusClass::Failed) => q.push(" AND (status < 200 OR status > 299)"),
        None => q.push(""),
    };
    if let Some(from) = f.from {
        q.push(" AND created_at >= ").push_bind(ms(from));
    }
    if let Some(until) = f.until {
        q.push(" AND created_at < ").push_bind(ms(until));
    }
}

fn totals_of(row: &sqlx::sqlite::SqliteRow) -> StoreResult<UsageTotals> {
    Ok(UsageTotals {
        requests: row.try_get("requests")?,
        prompt_tokens: row.try_get("prompt")?,
        completion_tokens: row.try_get("completion")?,
        charged: MicroCredits(row.try_get("charged")?),
    })
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
            .bind(r.rates.per_image.0)
            .bind(r.app_title.clone())
            .bind(r.app_origin.clone());
    }
    q
}

fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; 32].join(", "));
    format!("INSERT INTO usage_logs ({USAGE_COLS}) VALUES {} ON CONFLICT (id) DO NOTHING", vec![one; rows].join(", "))
}
