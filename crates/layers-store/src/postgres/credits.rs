//! Credit leases and settlement on PostgreSQL. Leases are taken in a transaction that names the
//! user (row-level security applies); settlement, returns, renewal and the reaper act for many
//! users and go through SECURITY DEFINER functions (migrations 0002 and 0004). What to grant and
//! which charges apply is decided by layers-domain's `credit` rules, from rows read under lock.

use std::collections::HashMap;

use async_trait::async_trait;
use layers_domain::credit::ledger::{self, BatchState, Charge, LeaseState};
use layers_domain::credit::{decide_grant, LeaseView, ThisLease};
use layers_domain::{MicroCredits, UserId};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::*;
use crate::settlement::{charge_of, grant_ask, result, row_to_write};
use crate::traits::CreditStore;

#[async_trait]
impl CreditStore for PgStore {
    async fn acquire_lease(&self, req: &LeaseRequest) -> StoreResult<LeaseGrant> {
        let mut tx = self.begin_as(req.user).await?;
        let view = lease_view(&mut tx, req).await?;
        let decision = decide_grant(&view, &grant_ask(req));
        if decision.granted.is_positive() {
            sqlx::query(
                "INSERT INTO credit_leases AS l (id, user_id, key_id, node_id, amount_micros, state, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', now(), now() + $6 * interval '1 millisecond') \
                 ON CONFLICT (id) DO UPDATE SET amount_micros = l.amount_micros + excluded.amount_micros, \
                                                expires_at = excluded.expires_at",
            )
            .bind(req.lease_id)
            .bind(req.user.0)
            .bind(req.key.0)
            .bind(req.node)
            .bind(decision.granted.0)
            .bind(ttl_ms(req.ttl))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE credit_balances SET leased_micros = leased_micros + $1 WHERE user_id = $2")
                .bind(decision.granted.0)
                .bind(req.user.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    async fn return_leases(&self, returns: &[LeaseReturn]) -> StoreResult<Vec<Uuid>> {
        if returns.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<Uuid> = returns.iter().map(|r| r.user.0).collect();
        let leases: Vec<Uuid> = returns.iter().map(|r| r.lease).collect();
        let amounts: Vec<i64> = returns.iter().map(|r| r.amount.0).collect();
        let ends: Vec<bool> = returns.iter().map(|r| r.end).collect();
        let epochs: Vec<Option<i64>> = returns.iter().map(|r| r.reclaim_epoch).collect();
        Ok(sqlx::query_scalar("SELECT layers_return_leases($1, $2, $3, $4, $5)")
            .bind(users)
            .bind(leases)
            .bind(amounts)
            .bind(ends)
            .bind(epochs)
            .fetch_all(self.pool())
            .await?)
    }

    async fn renew_leases(&self, node: Uuid, leases: &[Uuid], ttl: std::time::Duration) -> StoreResult<Vec<Uuid>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar("SELECT layers_renew_leases($1, $2, $3)")
            .bind(node)
            .bind(leases)
            .bind(ttl_ms(ttl))
            .fetch_all(self.pool())
            .await?)
    }

    async fn request_reclaim(&self, user: UserId) -> StoreResult<i64> {
        let mut tx = self.begin_as(user).await?;
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE credit_balances SET reclaim_epoch = reclaim_epoch + 1 WHERE user_id = $1 RETURNING reclaim_epoch",
        )
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        sqlx::query(
            "INSERT INTO cache_events (scope, key_hash, user_id, reclaim_epoch) VALUES ('credit', NULL, $1, $2)",
        )
        .bind(user.0)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(epoch)
    }

    async fn settle(&self, batch: &[Settlement]) -> StoreResult<Vec<SettleResult>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let charges: Vec<Charge> = batch.iter().map(charge_of).collect();
        let mut tx = self.pool().begin().await?;
        let mut state = batch_state(&mut tx, batch, &charges).await?;
        let (decisions, totals) = ledger::settle_batch(&mut state, &charges);
        let mut write = SettleWrite::default();
        let mut results = Vec::with_capacity(batch.len());
        for (s, d) in batch.iter().zip(&decisions) {
            results.push(result(s, d));
            let Some(row) = row_to_write(s, d) else { continue };
            if let Some(after) = d.balance_after.filter(|_| d.charged > 0) {
                write.debit(&row, after);
            }
            write.usage(&row);
        }
        write.totals(&totals);
        write.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn reap_expired_leases(&self) -> StoreResult<Reaped> {
        let row = sqlx::query("SELECT leases, micros FROM layers_reap_leases()").fetch_one(self.pool()).await?;
        Ok(Reaped { leases: row.try_get::<i64, _>("leases")?.max(0) as u64, micros: row.try_get("micros")? })
    }

    async fn leases_of_user(&self, user: UserId) -> StoreResult<Vec<LeaseRecord>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(
            "SELECT id, user_id, key_id, node_id, amount_micros, state, expires_at FROM credit_leases \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::lease).collect()
    }

    async fn credit_state(&self, user: UserId) -> StoreResult<CreditState> {
        let mut tx = self.begin_as(user).await?;
        let (balance, leased): (i64, i64) =
            sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        tx.commit().await?;
        Ok(CreditState { balance: MicroCredits(balance), leased: MicroCredits(leased) })
    }
}

fn ttl_ms(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// What the grant rule needs to know: the balance row locked first (the order every path takes,
/// so none deadlocks another), then the account's leases and spend.
async fn lease_view(tx: &mut Transaction<'static, Postgres>, req: &LeaseRequest) -> StoreResult<LeaseView> {
    let (balance, leased, epoch): (i64, i64, i64) = sqlx::query_as(
        "SELECT balance_micros, leased_micros, reclaim_epoch FROM credit_balances WHERE user_id = $1 FOR UPDATE",
    )
    .bind(req.user.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound { entity: "credit balance" })?;
    // The rolling hour is the last 61 minute buckets: never less than an hour.
    let row = sqlx::query(
        "SELECT (SELECT state FROM credit_leases WHERE id = $3) AS this_state, \
                (SELECT amount_micros FROM credit_leases WHERE id = $3) AS this_amount, \
                COALESCE(SUM(l.amount_micros) FILTER (WHERE l.key_id = $2), 0)::bigint AS key_leased, \
                COALESCE(SUM(l.amount_micros) FILTER (WHERE l.id <> $3 AND l.amount_micros > 0 \
                                                       AND l.reclaim_epoch < $4), 0)::bigint AS unanswered, \
                (SELECT COALESCE(SUM(s.spent_micros), 0) FROM spend_buckets s \
                  WHERE s.user_id = $1 AND s.minute >= extract(epoch FROM now())::bigint / 60 - 60)::bigint AS account_hour, \
                (SELECT COALESCE(SUM(s.spent_micros), 0) FROM spend_buckets s \
                  WHERE s.user_id = $1 AND s.key_id = $2 \
                    AND s.minute >= extract(epoch FROM now())::bigint / 60 - 60)::bigint AS key_hour, \
                CASE WHEN $5::bigint IS NULL \
                     THEN (SELECT COALESCE(k.spent_micros, 0) FROM api_keys k WHERE k.id = $2) \
                     ELSE (SELECT COALESCE(SUM(d.spent_micros), 0) FROM key_spend_days d \
                            WHERE d.key_id = $2 AND d.day >= $5) END::bigint AS key_spent \
         FROM credit_leases l WHERE l.user_id = $1 AND l.state = 'active'",
    )
    .bind(req.user.0)
    .bind(req.key.0)
    .bind(req.lease_id)
    .bind(epoch)
    .bind(req.key_period_from_day)
    .fetch_one(&mut **tx)
    .await?;
    let this_state: Option<String> = row.try_get("this_state")?;
    Ok(LeaseView {
        balance,
        leased,
        this_lease: match this_state.as_deref() {
            None => ThisLease::New,
            Some("active") => ThisLease::Active { amount: row.try_get::<Option<i64>, _>("this_amount")?.unwrap_or(0) },
            Some(_) => ThisLease::Ended,
        },
        key_leased: row.try_get("key_leased")?,
        account_hour_spent: row.try_get("account_hour")?,
        key_hour_spent: row.try_get("key_hour")?,
        key_spent: row.try_get::<Option<i64>, _>("key_spent")?.unwrap_or(0),
        others_unanswered: row.try_get("unanswered")?,
    })
}

/// Locks what a batch changes (balances, then leases, then keys, each in id order), reads
/// balances and leases, and the usage ids already recorded.
async fn batch_state(
    tx: &mut Transaction<'static, Postgres>,
    batch: &[Settlement],
    charges: &[Charge],
) -> StoreResult<BatchState> {
    let mut users: Vec<Uuid> = charges.iter().filter(|c| c.amount > 0).map(|c| c.user.0).collect();
    users.sort_unstable();
    users.dedup();
    let mut leases: Vec<Uuid> = charges.iter().filter(|c| c.amount > 0).filter_map(|c| c.lease).collect();
    leases.sort_unstable();
    leases.dedup();
    let mut keys: Vec<Uuid> = charges.iter().filter(|c| c.amount > 0).filter_map(|c| c.key.map(|k| k.0)).collect();
    keys.sort_unstable();
    keys.dedup();
    let ids: Vec<Uuid> = batch.iter().map(|s| s.usage.id).collect();
    let rows = sqlx::query("SELECT kind, id, amount, active FROM layers_settle_prepare($1, $2, $3, $4)")
        .bind(users)
        .bind(leases)
        .bind(keys)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
    let mut state = BatchState::default();
    for row in &rows {
        read_state_row(&mut state, row)?;
    }
    Ok(state)
}

fn read_state_row(state: &mut BatchState, row: &PgRow) -> StoreResult<()> {
    let kind: String = row.try_get("kind")?;
    let id: Uuid = row.try_get("id")?;
    let amount = || -> StoreResult<i64> {
        row.try_get::<Option<i64>, _>("amount")?.ok_or(StoreError::Corrupt { column: "amount" })
    };
    match kind.as_str() {
        "balance" => {
            state.balances.insert(UserId(id), amount()?);
        }
        "lease" => {
            let active = row.try_get::<Option<bool>, _>("active")?.unwrap_or(false);
            state.leases.insert(id, LeaseState { active, amount: amount()? });
        }
        "usage" => {
            state.existing.insert(id);
        }
        _ => return Err(StoreError::Corrupt { column: "kind" }),
    }
    Ok(())
}

/// The arrays `layers_settle_write` takes: one element per usage row, debit, and counter.
#[derive(Default)]
struct SettleWrite {
    u_id: Vec<Uuid>,
    u_request_id: Vec<String>,
    u_user: Vec<Uuid>,
    u_key: Vec<Option<Uuid>>,
    u_model: Vec<String>,
    u_provider: Vec<String>,
    u_upstream_model: Vec<String>,
    u_endpoint: Vec<String>,
    u_tokens: [Vec<i64>; 6],
    u_money: [Vec<i64>; 5],
    u_rates: [Vec<i64>; 5],
    u_latency: Vec<i64>,
    u_status: Vec<i32>,
    u_error: Vec<Option<String>>,
    u_streamed: Vec<bool>,
    u_estimated: Vec<bool>,
    u_created: Vec<OffsetDateTime>,
    u_app_title: Vec<Option<String>>,
    u_app_origin: Vec<Option<String>>,
    d_id: Vec<Uuid>,
    d_user: Vec<Uuid>,
    d_key: Vec<Option<Uuid>>,
    d_amount: Vec<i64>,
    d_after: Vec<i64>,
    d_request: Vec<String>,
    d_created: Vec<OffsetDateTime>,
    b: (Vec<Uuid>, Vec<i64>),
    l: (Vec<Uuid>, Vec<i64>),
    k: (Vec<Uuid>, Vec<i64>),
    s: (Vec<Uuid>, Vec<Uuid>, Vec<i64>, Vec<i64>),
}

impl SettleWrite {
    fn usage(&mut self, r: &UsageRecord) {
        self.u_id.push(r.id);
        self.u_request_id.push(r.request_id.clone());
        self.u_user.push(r.user_id.0);
        self.u_key.push(r.key_id.map(|k| k.0));
        self.u_model.push(r.model.clone());
        self.u_provider.push(r.provider.clone());
        self.u_upstream_model.push(r.upstream_model.clone());
        self.u_endpoint.push(r.endpoint.clone());
        let u = &r.usage;
        let tokens =
            [u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens, u.images];
        for (column, v) in self.u_tokens.iter_mut().zip(tokens) {
            column.push(i64::from(v));
        }
        for (column, v) in self.u_money.iter_mut().zip([r.cost, r.charged, r.held, r.shortfall, r.fees]) {
            column.push(v.0);
        }
        let rates = [
            r.rates.input.micros_per_mtok(),
            r.rates.output.micros_per_mtok(),
            r.rates.cached_input.micros_per_mtok(),
            r.rates.cache_write_input.micros_per_mtok(),
            r.rates.per_image.0,
        ];
        for (column, v) in self.u_rates.iter_mut().zip(rates) {
            column.push(v);
        }
        self.u_latency.push(r.latency_ms);
        self.u_status.push(i32::from(r.status));
        self.u_error.push(r.error_code.clone());
        self.u_streamed.push(r.streamed);
        self.u_estimated.push(r.usage_estimated);
        self.u_created.push(r.created_at);
        self.u_app_title.push(r.app_title.clone());
        self.u_app_origin.push(r.app_origin.clone());
    }

    fn debit(&mut self, r: &UsageRecord, balance_after: i64) {
        self.d_id.push(r.id);
        self.d_user.push(r.user_id.0);
        self.d_key.push(r.key_id.map(|k| k.0));
        self.d_amount.push(-r.charged.0);
        self.d_after.push(balance_after);
        self.d_request.push(r.request_id.clone());
        self.d_created.push(r.created_at);
    }

    fn totals(&mut self, t: &ledger::BatchTotals) {
        let sorted = |m: &HashMap<Uuid, i64>| {
            let mut v: Vec<(Uuid, i64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort_unstable();
            v.into_iter().unzip::<Uuid, i64, Vec<Uuid>, Vec<i64>>()
        };
        self.b = sorted(&t.users.iter().map(|(u, v)| (u.0, *v)).collect());
        self.l = sorted(&t.leases);
        self.k = sorted(&t.keys.iter().map(|(k, v)| (k.0, *v)).collect());
        let mut buckets: Vec<_> = t.buckets.iter().filter_map(|((u, k, m), v)| k.map(|k| (u.0, k.0, *m, *v))).collect();
        buckets.sort_unstable();
        for (u, k, m, v) in buckets {
            self.s.0.push(u);
            self.s.1.push(k);
            self.s.2.push(m);
            self.s.3.push(v);
        }
    }

    async fn execute(self, tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
        let [prompt, completion, cached, cache_write, reasoning, images] = self.u_tokens;
        let [cost, charged, held, shortfall, fees] = self.u_money;
        let [rate_in, rate_out, rate_cached, rate_write, rate_image] = self.u_rates;
        sqlx::query(
            "SELECT layers_settle_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, \
             $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49)",
        )
        .bind(self.u_id)
        .bind(self.u_request_id)
        .bind(self.u_user)
        .bind(self.u_key)
        .bind(self.u_model)
        .bind(self.u_provider)
        .bind(self.u_upstream_model)
        .bind(self.u_endpoint)
        .bind(prompt)
        .bind(completion)
        .bind(cached)
        .bind(cache_write)
        .bind(reasoning)
        .bind(images)
        .bind(cost)
        .bind(charged)
        .bind(held)
        .bind(shortfall)
        .bind(fees)
        .bind(rate_in)
        .bind(rate_out)
        .bind(rate_cached)
        .bind(rate_write)
        .bind(rate_image)
        .bind(self.u_latency)
        .bind(self.u_status)
        .bind(self.u_error)
        .bind(self.u_streamed)
        .bind(self.u_estimated)
        .bind(self.u_created)
        .bind(self.d_id)
        .bind(self.d_user)
        .bind(self.d_key)
        .bind(self.d_amount)
        .bind(self.d_after)
        .bind(self.d_request)
        .bind(self.d_created)
        .bind(self.b.0)
        .bind(self.b.1)
        .bind(self.l.0)
        .bind(self.l.1)
        .bind(self.k.0)
        .bind(self.k.1)
        .bind(self.s.0)
        .bind(self.s.1)
        .bind(self.s.2)
        .bind(self.s.3)
        .bind(self.u_app_title)
        .bind(self.u_app_origin)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
