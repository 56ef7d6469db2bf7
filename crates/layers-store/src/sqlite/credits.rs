//! Credit leases and settlement on SQLite. Every operation is one `BEGIN IMMEDIATE`
//! transaction, so it reads and changes the balance atomically; what to grant and which charges
//! apply is decided by layers-domain's `credit` rules, from what the transaction read.

use std::collections::HashMap;

use async_trait::async_trait;
use layers_domain::credit::ledger::{self, BatchState, BatchTotals, Charge, LeaseState};
use layers_domain::credit::{decide_grant, LeaseView, ThisLease};
use layers_domain::{MicroCredits, UserId};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows::{self, ms};
use super::usage;
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::*;
use crate::settlement::{charge_of, grant_ask, result, row_to_write};
use crate::traits::CreditStore;

type Tx = Transaction<'static, Sqlite>;

#[async_trait]
impl CreditStore for SqliteStore {
    async fn acquire_lease(&self, req: &LeaseRequest) -> StoreResult<LeaseGrant> {
        let mut tx = self.begin_write().await?;
        let now = OffsetDateTime::now_utc();
        let view = lease_view(&mut tx, req, now).await?;
        let decision = decide_grant(&view, &grant_ask(req));
        if decision.granted.is_positive() {
            let expires_at = ms(now + req.ttl);
            let (user, lease) = (req.user.to_string(), req.lease_id.to_string());
            if view.this_lease == ThisLease::New {
                sqlx::query(
                    "INSERT INTO credit_leases (id, user_id, key_id, node_id, amount_micros, state, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                )
                .bind(&lease)
                .bind(&user)
                .bind(req.key.to_string())
                .bind(req.node.to_string())
                .bind(decision.granted.0)
                .bind(ms(now))
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("UPDATE credit_leases SET amount_micros = amount_micros + ?, expires_at = ? WHERE id = ?")
                    .bind(decision.granted.0)
                    .bind(expires_at)
                    .bind(&lease)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE credit_balances SET leased_micros = leased_micros + ? WHERE user_id = ?")
                .bind(decision.granted.0)
                .bind(&user)
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
        let mut tx = self.begin_write().await?;
        let now = ms(OffsetDateTime::now_utc());
        let mut active = Vec::with_capacity(returns.len());
        let mut per_user: HashMap<UserId, i64> = HashMap::new();
        // Leases that end give back all they hold, whatever the amount: one statement for all
        // of them (idle release and shutdown end hundreds at once).
        let ending: Vec<&LeaseReturn> = returns.iter().filter(|r| r.end && r.reclaim_epoch.is_none()).collect();
        for chunk in ending.chunks(500) {
            let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
            let select = format!(
                "SELECT id, user_id, amount_micros FROM credit_leases \
                 WHERE state = 'active' AND (id, user_id) IN (VALUES {pairs})"
            );
            let update = format!(
                "UPDATE credit_leases SET state = 'released', ended_at = ?, amount_micros = 0 \
                 WHERE state = 'active' AND (id, user_id) IN (VALUES {pairs})"
            );
            let mut held = sqlx::query(&select).persistent(false);
            let mut end = sqlx::query(&update).persistent(false).bind(now);
            for r in chunk {
                held = held.bind(r.lease.to_string()).bind(r.user.to_string());
                end = end.bind(r.lease.to_string()).bind(r.user.to_string());
            }
            let held = held.fetch_all(&mut *tx).await?;
            end.execute(&mut *tx).await?;
            for row in held {
                let (id, user): (String, String) = (row.try_get("id")?, row.try_get("user_id")?);
                let lease = Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt { column: "id" })?;
                let user = UserId(user.parse().map_err(|_| StoreError::Corrupt { column: "user_id" })?);
                *per_user.entry(user).or_default() += row.try_get::<i64, _>("amount_micros")?;
                active.push(lease);
            }
        }
        for r in returns.iter().filter(|r| !(r.end && r.reclaim_epoch.is_none())) {
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT amount_micros FROM credit_leases WHERE id = ? AND user_id = ? AND state = 'active'",
            )
            .bind(r.lease.to_string())
            .bind(r.user.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(current) = current else { continue };
            let back = r.amount.0.clamp(0, current);
            sqlx::query(
                "UPDATE credit_leases SET amount_micros = CASE WHEN ? THEN 0 ELSE amount_micros - ? END, \
                 state = CASE WHEN ? THEN 'released' ELSE state END, \
                 ended_at = CASE WHEN ? THEN ? ELSE ended_at END, \
                 reclaim_epoch = MAX(reclaim_epoch, ?) WHERE id = ?",
            )
            .bind(r.end)
            .bind(back)
            .bind(r.end)
            .bind(r.end)
            .bind(now)
            .bind(r.reclaim_epoch.unwrap_or(0))
            .bind(r.lease.to_string())
            .execute(&mut *tx)
            .await?;
            // An ended lease gives back everything it still held.
            *per_user.entry(r.user).or_default() += if r.end { current } else { back };
            active.push(r.lease);
        }
        for (user, released) in per_user {
            sqlx::query("UPDATE credit_balances SET leased_micros = MAX(0, leased_micros - ?) WHERE user_id = ?")
                .bind(released)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(active)
    }

    async fn renew_leases(&self, node: Uuid, leases: &[Uuid], ttl: std::time::Duration) -> StoreResult<Vec<Uuid>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires_at = OffsetDateTime::now_utc() + ttl;
        let mut tx = self.begin_write().await?;
        let mut renewed = Vec::with_capacity(leases.len());
        for id in leases {
            let done = sqlx::query(
                "UPDATE credit_leases SET expires_at = ? WHERE id = ? AND node_id = ? AND state = 'active'",
            )
            .bind(ms(expires_at))
            .bind(id.to_string())
            .bind(node.to_string())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                renewed.push(*id);
            }
        }
        tx.commit().await?;
        Ok(renewed)
    }

    async fn request_reclaim(&self, user: UserId) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE credit_balances SET reclaim_epoch = reclaim_epoch + 1 WHERE user_id = ? RETURNING reclaim_epoch",
        )
        .bind(user.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        sqlx::query(
            "INSERT INTO cache_events (scope, key_hash, user_id, created_at, reclaim_epoch) VALUES ('credit', NULL, ?, ?, ?)",
        )
        .bind(user.to_string())
        .bind(ms(OffsetDateTime::now_utc()))
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
        let mut tx = self.begin_write().await?;
        let results = settle_in(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn reap_expired_leases(&self) -> StoreResult<Reaped> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin_write().await?;
        let expired = sqlx::query(
            "UPDATE credit_leases SET state = 'expired', ended_at = ? WHERE state = 'active' AND expires_at < ? \
             RETURNING user_id, amount_micros",
        )
        .bind(ms(now))
        .bind(ms(now))
        .fetch_all(&mut *tx)
        .await?;
        let mut ended = Vec::with_capacity(expired.len());
        for row in &expired {
            let user: String = row.try_get("user_id")?;
            let user = user.parse().map_err(|_| StoreError::Corrupt { column: "user_id" })?;
            ended.push((UserId(user), row.try_get::<i64, _>("amount_micros")?));
        }
        let reaped = Reaped { leases: ended.len() as u64, micros: ended.iter().map(|(_, a)| a).sum() };
        for (user, amount) in ledger::reap(ended) {
            sqlx::query("UPDATE credit_balances SET leased_micros = MAX(0, leased_micros - ?) WHERE user_id = ?")
                .bind(amount)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM spend_buckets WHERE minute < ?")
            .bind(ms(now) / 60_000 - 120)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(reaped)
    }

    async fn leases_of_user(&self, user: UserId) -> StoreResult<Vec<LeaseRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, key_id, node_id, amount_micros, state, expires_at FROM credit_leases \
             WHERE user_id = ? ORDER BY created_at",
        )
        .bind(user.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::lease).collect()
    }

    async fn credit_state(&self, user: UserId) -> StoreResult<CreditState> {
        let (balance, leased): (i64, i64) =
            sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = ?")
                .bind(user.to_string())
                .fetch_optional(self.pool())
                .await?
                .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        Ok(CreditState { balance: MicroCredits(balance), leased: MicroCredits(leased) })
    }
}

/// What the grant rule needs to know, read inside the write transaction.
async fn lease_view(tx: &mut Tx, req: &LeaseRequest, now: OffsetDateTime) -> StoreResult<LeaseView> {
    let (user, key, lease) = (req.user.to_string(), req.key.to_string(), req.lease_id.to_string());
    let (balance, leased, epoch): (i64, i64, i64) =
        sqlx::query_as("SELECT balance_micros, leased_micros, reclaim_epoch FROM credit_balances WHERE user_id = ?")
            .bind(&user)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound { entity: "credit balance" })?;
    let this: Option<(String, i64)> = sqlx::query_as("SELECT state, amount_micros FROM credit_leases WHERE id = ?")
        .bind(&lease)
        .fetch_optional(&mut **tx)
        .await?;
    let (key_leased, others_unanswered): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN key_id = ? THEN amount_micros ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN id <> ? AND amount_micros > 0 AND reclaim_epoch < ? THEN amount_micros ELSE 0 END), 0) \
         FROM credit_leases WHERE user_id = ? AND state = 'active'",
    )
    .bind(&key)
    .bind(&lease)
    .bind(epoch)
    .bind(&user)
    .fetch_one(&mut **tx)
    .await?;
    // The rolling hour is the last 61 minute buckets: never less than an hour.
    let since_minute = ms(now) / 60_000 - 61;
    let (account_hour_spent, key_hour_spent): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(spent_micros), 0), COALESCE(SUM(CASE WHEN key_id = ? THEN spent_micros ELSE 0 END), 0) \
         FROM spend_buckets WHERE user_id = ? AND minute > ?",
    )
    .bind(&key)
    .bind(&user)
    .bind(since_minute)
    .fetch_one(&mut **tx)
    .await?;
    let key_spent: i64 = match req.key_period_from_day {
        // A calendar limit counts the period's spend only.
        Some(from_day) => sqlx::query_scalar(
            "SELECT COALESCE(SUM(spent_micros), 0) FROM key_spend_days WHERE user_id = ? AND key_id = ? AND day >= ?",
        )
        .bind(&user)
        .bind(&key)
        .bind(from_day)
        .fetch_one(&mut **tx)
        .await?,
        None => sqlx::query_scalar("SELECT spent_micros FROM api_keys WHERE id = ?")
            .bind(&key)
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or(0),
    };
    Ok(LeaseView {
        balance,
        leased,
        this_lease: match this {
            None => ThisLease::New,
            Some((state, amount)) if state == "active" => ThisLease::Active { amount },
            Some(_) => ThisLease::Ended,
        },
        key_leased,
        account_hour_spent,
        key_hour_spent,
        key_spent,
        others_unanswered,
    })
}

/// The body of `settle`, inside the caller's write transaction: read what the batch touches,
/// let the domain decide every row, then write rows and one update per touched counter.
async fn settle_in(tx: &mut Tx, batch: &[Settlement]) -> StoreResult<Vec<SettleResult>> {
    let charges: Vec<Charge> = batch.iter().map(charge_of).collect();
    let mut state = batch_state(tx, batch, &charges).await?;
    let (decisions, totals) = ledger::settle_batch(&mut state, &charges);
    let mut usage_rows = Vec::with_capacity(batch.len());
    let mut debits = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for (s, d) in batch.iter().zip(&decisions) {
        results.push(result(s, d));
        let Some(row) = row_to_write(s, d) else { continue };
        if let Some(after) = d.balance_after.filter(|_| d.charged > 0) {
            debits.push((row.clone(), after));
        }
        usage_rows.push(row);
    }
    insert_debits(tx, &debits).await?;
    let mut chunks = usage_rows.chunks_exact(usage::ROWS_PER_STATEMENT);
    for chunk in &mut chunks {
        usage::insert(chunk).execute(&mut **tx).await?;
    }
    for row in chunks.remainder() {
        usage::insert(std::slice::from_ref(row)).execute(&mut **tx).await?;
    }
    apply_totals(tx, &totals).await?;
    Ok(results)
}

/// Balances and leases the batch charges, and usage ids already recorded.
async fn batch_state(tx: &mut Tx, batch: &[Settlement], charges: &[Charge]) -> StoreResult<BatchState> {
    let mut state = BatchState::default();
    for c in charges.iter().filter(|c| c.amount > 0) {
        if let std::collections::hash_map::Entry::Vacant(slot) = state.balances.entry(c.user) {
            let balance: Option<i64> =
                sqlx::query_scalar("SELECT balance_micros FROM credit_balances WHERE user_id = ?")
                    .bind(c.user.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            slot.insert(balance.ok_or(StoreError::NotFound { entity: "credit balance" })?);
        }
        if let Some(lease) = c.lease.filter(|l| !state.leases.contains_key(l)) {
            let row: Option<(String, i64)> =
                sqlx::query_as("SELECT state, amount_micros FROM credit_leases WHERE id = ?")
                    .bind(lease.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            if let Some((s, amount)) = row {
                state.leases.insert(lease, LeaseState { active: s == "active", amount });
            }
        }
    }
    for chunk in batch.chunks(500) {
        let sql = format!("SELECT id FROM usage_logs WHERE id IN ({})", vec!["?"; chunk.len()].join(", "));
        let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false);
        for s in chunk {
            q = q.bind(s.usage.id.to_string());
        }
        for id in q.fetch_all(&mut **tx).await? {
            if let Ok(id) = Uuid::parse_str(&id) {
                state.existing.insert(id);
            }
        }
    }
    Ok(state)
}

const DEBITS_PER_STATEMENT: usize = 50;

async fn insert_debits(tx: &mut Tx, debits: &[(UsageRecord, i64)]) -> StoreResult<()> {
    static CHUNK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static SINGLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = |rows: usize| {
        let one = "(?, ?, 'usage', ?, ?, ?, NULL, ?, ?, ?)";
        format!(
            "INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros, \
             idempotency_key, reason, request_id, created_at, key_id) VALUES {}",
            vec![one; rows].join(", ")
        )
    };
    let mut chunks = debits.chunks_exact(DEBITS_PER_STATEMENT);
    let full = CHUNK.get_or_init(|| sql(DEBITS_PER_STATEMENT));
    let single = SINGLE.get_or_init(|| sql(1));
    let groups = (&mut chunks).map(|c| (full, c)).collect::<Vec<_>>();
    let rest = chunks.remainder().chunks(1).map(|c| (single, c));
    for (sql, rows) in groups.into_iter().chain(rest) {
        let mut q = sqlx::query(sql.as_str());
        for (row, after) in rows {
            q = q
                .bind(row.id.to_string())
                .bind(row.user_id.to_string())
                .bind(-row.charged.0)
                .bind(after)
                .bind(format!("usage:{}", row.id))
                .bind(row.request_id.clone())
                .bind(ms(row.created_at))
                .bind(row.key_id.map(|k| k.to_string()));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn apply_totals(tx: &mut Tx, totals: &BatchTotals) -> StoreResult<()> {
    let now = ms(OffsetDateTime::now_utc());
    for (user, charged) in &totals.users {
        sqlx::query(
            "UPDATE credit_balances SET balance_micros = balance_micros - ?, leased_micros = MAX(0, leased_micros - ?), \
             updated_at = ? WHERE user_id = ?",
        )
        .bind(charged)
        .bind(charged)
        .bind(now)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    }
    for (lease, charged) in &totals.leases {
        sqlx::query("UPDATE credit_leases SET amount_micros = MAX(0, amount_micros - ?) WHERE id = ?")
            .bind(charged)
            .bind(lease.to_string())
            .execute(&mut **tx)
            .await?;
    }
    for (key, charged) in &totals.keys {
        sqlx::query("UPDATE api_keys SET spent_micros = spent_micros + ? WHERE id = ?")
            .bind(charged)
            .bind(key.to_string())
            .execute(&mut **tx)
            .await?;
    }
    for ((user, key, minute), charged) in &totals.buckets {
        sqlx::query(
            "INSERT INTO spend_buckets (user_id, key_id, minute, spent_micros) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, key_id, minute) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros",
        )
        .bind(user.to_string())
        .bind(key.map(|k| k.to_string()).unwrap_or_default())
        .bind(minute)
        .bind(charged)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
