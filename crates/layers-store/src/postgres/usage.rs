//! Usage rows on PostgreSQL, written in batches through `layers_record_usage`.

use async_trait::async_trait;
use layers_domain::{KeyId, MicroCredits, UserId};
use serde_json::json;
use sqlx::{Postgres, QueryBuilder, Row};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{StatusClass, UsageCursor, UsageFilter, UsageRecord, UsageSummary, UsageTotals};
use crate::traits::UsageStore;

const USAGE_COLS: &str = "id, request_id, user_id, key_id, model, provider, upstream_model, endpoint, \
     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, images, cost_micros, latency_ms, \
     status, error_code, streamed, usage_estimated, created_at, charged_micros, cache_write_tokens, held_micros, \
     shortfall_micros, fees_micros, rate_input, rate_output, rate_cached_input, rate_cache_write, rate_image, \
     app_title, app_origin";

#[async_trait]
impl UsageStore for PgStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> StoreResult<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let rows = batch.iter().map(to_json).collect::<StoreResult<Vec<_>>>()?;
        let written: i64 = sqlx::query_scalar("SELECT layers_record_usage($1)")
            .bind(serde_json::Value::Array(rows))
            .fetch_one(self.pool())
            .await?;
        Ok(written.max(0) as u64)
    }

    async fn usage_by_request(&self, user: UserId, request_id: &str) -> StoreResult<Option<UsageRecord>> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = $1 AND request_id = $2 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(user.0)
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(rows::usage).transpose()
    }

    async fn recent_usage(
        &self,
        user: UserId,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = $1 \
             AND ($2::timestamptz IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(user.0)
        .bind(before.map(|c| c.created_at))
        .bind(before.map(|c| c.id))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::usage).collect()
    }

    async fn usage_page(
        &self,
        user: UserId,
        filter: &UsageFilter,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {USAGE_COLS} FROM usage_logs"));
        push_filter(&mut q, user, filter);
        if let Some(c) = before {
            q.push(" AND (created_at, id) < (").push_bind(c.created_at).push(", ").push_bind(c.id).push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
        let mut tx = self.begin_as(user).await?;
        let rows = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(rows::usage).collect()
    }

    async fn usage_summary(&self, user: UserId, filter: &UsageFilter) -> StoreResult<UsageSummary> {
        let totals = "COUNT(*)::bigint AS requests, COALESCE(SUM(prompt_tokens), 0)::bigint AS prompt, \
                      COALESCE(SUM(completion_tokens), 0)::bigint AS completion, \
                      COALESCE(SUM(charged_micros), 0)::bigint AS charged";
        let group = |by: &str, order: &str, limit: Option<u32>| {
            let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {by} AS g, {totals} FROM usage_logs"));
            push_filter(&mut q, user, filter);
            q.push(format!(" GROUP BY 1 ORDER BY {order}"));
            if let Some(n) = limit {
                q.push(" LIMIT ").push_bind(i64::from(n));
            }
            q
        };
        let mut tx = self.begin_as(user).await?;
        let mut summary = UsageSummary::default();
        let mut all = QueryBuilder::<Postgres>::new(format!("SELECT {totals} FROM usage_logs"));
        push_filter(&mut all, user, filter);
        summary.total = totals_of(&all.build().fetch_one(&mut *tx).await?)?;
        let day = "floor(extract(epoch FROM created_at) / 86400)::bigint";
        for row in group(day, "1", None).build().fetch_all(&mut *tx).await? {
            summary.by_day.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("model", "charged DESC, requests DESC, 1", Some(50)).build().fetch_all(&mut *tx).await? {
            summary.by_model.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("provider", "charged DESC, requests DESC, 1", Some(50)).build().fetch_all(&mut *tx).await? {
            summary.by_provider.push((row.try_get("g")?, totals_of(&row)?));
        }
        for row in group("key_id", "charged DESC, requests DESC, 1", Some(100)).build().fetch_all(&mut *tx).await? {
            let key: Option<Uuid> = row.try_get("g")?;
            summary.by_key.push((key.map(KeyId), totals_of(&row)?));
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn usage_row(&self, user: UserId, id: Uuid) -> StoreResult<Option<UsageRecord>> {
        let mut tx = self.begin_as(user).await?;
        let row = sqlx::query(&format!("SELECT {USAGE_COLS} FROM usage_logs WHERE user_id = $1 AND id = $2"))
            .bind(user.0)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(rows::usage).transpose()
    }

    async fn spend_by_model(
        &self,
        user: UserId,
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> StoreResult<Vec<(String, layers_domain::MicroCredits)>> {
        let mut tx = self.begin_as(user).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model, COALESCE(SUM(charged_micros), 0)::bigint FROM usage_logs \
             WHERE user_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY model",
        )
        .bind(user.0)
        .bind(from)
        .bind(until)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(m, c)| (m, layers_domain::MicroCredits(c))).collect())
    }

    async fn prune_usage(&self, before: time::OffsetDateTime, limit: u32) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT layers_prune_usage($1, $2)")
            .bind(before)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// `WHERE` for the user's rows the filter selects.
fn push_filter<'a>(q: &mut QueryBuilder<'a, Postgres>, user: UserId, f: &'a UsageFilter) {
    q.push(" WHERE user_id = ").push_bind(user.0);
    if let Some(key) = f.key {
        q.push(" AND key_id = ").push_bind(key.0);
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
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(until) = f.until {
        q.push(" AND created_at < ").push_bind(until);
    }
}

fn totals_of(row: &sqlx::postgres::PgRow) -> StoreResult<UsageTotals> {
    Ok(UsageTotals {
        requests: row.try_get("requests")?,
        prompt_tokens: row.try_get("prompt")?,
        completion_tokens: row.try_get("completion")?,
        charged: MicroCredits(row.try_get("charged")?),
    })
}

pub(super) fn to_json(r: &UsageRecord) -> StoreResult<serde_json::Value> {
    let created_at = r.created_at.format(&Rfc3339).map_err(|_| StoreError::Corrupt { column: "created_at" })?;
    Ok(json!({
        "id": r.id,
        "request_id": r.request_id,
        "user_id": r.user_id.0,
        "key_id": r.key_id.map(|k| k.0),
        "model": r.model,
        "provider": r.provider,
        "upstream_model": r.upstream_model,
        "endpoint": r.endpoint,
        "prompt_tokens": r.usage.prompt_tokens,
        "completion_tokens": r.usage.completion_tokens,
        "cached_tokens": r.usage.cached_tokens,
        "reasoning_tokens": r.usage.reasoning_tokens,
        "images": r.usage.images,
        "cost_micros": r.cost.0,
        "latency_ms": r.latency_ms,
        "status": r.status,
        "error_code": r.error_code,
        "streamed": r.streamed,
        "usage_estimated": r.usage_estimated,
        "created_at": created_at,
        "charged_micros": r.charged.0,
        "cache_write_tokens": r.usage.cache_write_tokens,
        "held_micros": r.held.0,
        "shortfall_micros": r.shortfall.0,
        "fees_micros": r.fees.0,
        "rate_input": r.rates.input.micros_per_mtok(),
        "rate_output": r.rates.output.micros_per_mtok(),
        "rate_cached_input": r.rates.cached_input.micros_per_mtok(),
        "rate_cache_write": r.rates.cache_write_input.micros_per_mtok(),
        "rate_image": r.rates.per_image.0,
        "app_title": r.app_title,
        "app_origin": r.app_origin,
    }))
}
