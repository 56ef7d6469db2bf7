//! Credit leases and settlement on SQLite. Every operation is one `BEGIN IMMEDIATE`
//! transaction, so it sees and changes the balance atomically.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use layers_domain::{MicroCredits, UserId};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows::{self, ms};
use super::usage;
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::*;
use crate::traits::CreditStore;

#[async_trait]
impl CreditStore for SqliteStore {
    async fn acquire_lease(&self, req: &LeaseRequest) -> StoreResult<LeaseGrant> {
        let mut tx = self.begin_write().await?;
        let user = req.user.to_string();
        let key = req.key.to_string();
        let (balance, leased): (i64, i64) =
            sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = ?")
                .bind(&user)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound { entity: "credit balance" })?;
        let available = (balance - leased).max(0);
        let key_leases: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_micros), 0) FROM credit_leases WHERE user_id = ? AND key_id = ? AND state = 'active'",
        )
        .bind(&user)
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
        let now = OffsetDateTime::now_utc();
        let expires_at = now + req.ttl;
        // The rolling hour is the last 61 minute buckets: never less than an hour.
        let since_minute = ms(now) / 60_000 - 61;
        let account_hour_room = match req.account_hour_cap {
            Some(cap) => {
                let spent: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(SUM(spent_micros), 0) FROM spend_buckets WHERE user_id = ? AND minute > ?",
                )
                .bind(&user)
                .bind(since_minute)
                .fetch_one(&mut *tx)
                .await?;
                Some((cap.0 - leased - spent).max(0))
            }
            None => None,
        };
        let key_hour_room = match req.key_hour_cap {
            Some(cap) => {
                let spent: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(SUM(spent_micros), 0) FROM spend_buckets WHERE user_id = ? AND key_id = ? AND minute > ?",
                )
                .bind(&user)
                .bind(&key)
                .bind(since_minute)
                .fetch_one(&mut *tx)
                .await?;
                Some((cap.0 - key_leases - spent).max(0))
            }
            None => None,
        };
        let key_total_room = match req.key_total_cap {
            Some(cap) => {
                let spent: i64 = sqlx::query_scalar("SELECT spent_micros FROM api_keys WHERE id = ?")
                    .bind(&key)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(0);
                Some((cap.0 - key_leases - spent).max(0))
            }
            None => None,
        };
        let limit = [Some(available), account_hour_room, key_hour_room, key_total_room]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0);
        // At most a quarter of the room left, so one busy node or key cannot strand the rest.
        let mut grant = if limit < req.min.0 || limit <= 0 { 0 } else { req.want.0.min(req.min.0.max(limit / 4)) };
        let mut lease_ended = false;
        if grant > 0 {
            let state: Option<String> = sqlx::query_scalar("SELECT state FROM credit_leases WHERE id = ?")
                .bind(req.lease_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            match state.as_deref() {
                None => {
                    sqlx::query(
                        "INSERT INTO credit_leases (id, user_id, key_id, node_id, amount_micros, state, created_at, expires_at) \
                         VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                    )
                    .bind(req.lease_id.to_string())
                    .bind(&user)
                    .bind(&key)
                    .bind(req.node.to_string())
                    .bind(grant)
                    .bind(ms(now))
                    .bind(ms(expires_at))
                    .execute(&mut *tx)
                    .await?;
                }
                Some("active") => {
                    sqlx::query(
                        "UPDATE credit_leases SET amount_micros = amount_micros + ?, expires_at = ? WHERE id = ?",
                    )
                    .bind(grant)
                    .bind(ms(expires_at))
                    .bind(req.lease_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                Some(_) => {
                    lease_ended = true;
                    grant = 0;
                }
            }
            if grant > 0 {
                sqlx::query("UPDATE credit_balances SET leased_micros = leased_micros + ? WHERE user_id = ?")
                    .bind(grant)
                    .bind(&user)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(LeaseGrant {
            granted: MicroCredits(grant),
            balance: MicroCredits(balance),
            available: MicroCredits(available),
            account_hour_room: account_hour_room.map(MicroCredits),
            key_hour_room: key_hour_room.map(MicroCredits),
            key_total_room: key_total_room.map(MicroCredits),
            lease_ended,
        })
    }

    async fn return_lease(&self, user: UserId, lease: Uuid, amount: MicroCredits, end: bool) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT amount_micros FROM credit_leases WHERE id = ? AND user_id = ? AND state = 'active'",
        )
        .bind(lease.to_string())
        .bind(user.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else { return Ok(false) };
        let back = amount.0.clamp(0, current);
        let (state, ended_at) = if end { ("released", Some(ms(OffsetDateTime::now_utc()))) } else { ("active", None) };
        sqlx::query("UPDATE credit_leases SET amount_micros = amount_micros - ?, state = ?, ended_at = ? WHERE id = ?")
            .bind(back)
            .bind(state)
            .bind(ended_at)
            .bind(lease.to_string())
            .execute(&mut *tx)
            .await?;
        // An ended lease gives back everything it still held.
        let released = if end { current } else { back };
        sqlx::query("UPDATE credit_balances SET leased_micros = MAX(0, leased_micros - ?) WHERE user_id = ?")
            .bind(released)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
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
        let mut per_user: HashMap<String, i64> = HashMap::new();
        let mut reaped = Reaped::default();
        for row in &expired {
            let amount: i64 = row.try_get("amount_micros")?;
            *per_user.entry(row.try_get("user_id")?).or_default() += amount;
            reaped.leases += 1;
            reaped.micros += amount;
        }
        for (user, amount) in per_user {
            sqlx::query("UPDATE credit_balances SET leased_micros = MAX(0, leased_micros - ?) WHERE user_id = ?")
                .bind(amount)
                .bind(user)
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

/// A ledger debit to insert.
struct Debit {
    id: Uuid,
    user: UserId,
    key: Option<String>,
    amount: i64,
    balance_after: i64,
    request_id: String,
    created_at: i64,
}

/// Counters a batch moves, summed so each is updated once per batch.
#[derive(Default)]
struct Totals {
    /// Per user: (charged from the balance, released from its leases).
    users: HashMap<UserId, (i64, i64)>,
    leases: HashMap<Uuid, i64>,
    keys: HashMap<String, i64>,
    buckets: HashMap<(UserId, String, i64), i64>,
}

/// The body of `settle`, inside the caller's write transaction: one pass to decide every
/// row, then multi-row inserts and one update per touched counter.
async fn settle_in(tx: &mut Transaction<'static, Sqlite>, batch: &[Settlement]) -> StoreResult<Vec<SettleResult>> {
    let existing = existing_usage(tx, batch).await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut seen = HashSet::new();
    // Per user: (balance, leased) as this batch moves them.
    let mut balances: HashMap<UserId, (i64, i64)> = HashMap::new();
    let mut lease_active: HashMap<Uuid, bool> = HashMap::new();
    let mut usage_rows = Vec::with_capacity(batch.len());
    let mut debits = Vec::new();
    let mut totals = Totals::default();
    for s in batch {
        let id = s.usage.id;
        if existing.contains(&id) || !seen.insert(id) {
            results.push(SettleResult {
                usage_id: id,
                outcome: SettleOutcome::Duplicate,
                charged: MicroCredits::ZERO,
                balance_after: None,
            });
            continue;
        }
        let mut row = s.usage.clone();
        let asked = row.charged.0.max(0);
        let overage = s.overage.0.max(0);
        let mut outcome = SettleOutcome::Applied;
        let mut balance_after = None;
        let active = match s.lease_id {
            _ if asked == 0 => true,
            Some(lease) => match lease_active.get(&lease) {
                Some(known) => *known,
                None => {
                    let state: Option<String> = sqlx::query_scalar("SELECT state FROM credit_leases WHERE id = ?")
                        .bind(lease.to_string())
                        .fetch_optional(&mut **tx)
                        .await?;
                    let active = state.as_deref() == Some("active");
                    lease_active.insert(lease, active);
                    active
                }
            },
            None => false,
        };
        if !active {
            outcome = SettleOutcome::Refused;
            row.charged = MicroCredits::ZERO;
        } else if asked > 0 || overage > 0 {
            let (balance, leased) = match balances.get(&row.user_id) {
                Some(b) => *b,
                None => sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = ?")
                    .bind(row.user_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or(StoreError::NotFound { entity: "credit balance" })?,
            };
            // Never below zero: a charge the balance cannot cover is cut to what it can. An
            // overage takes only what no lease holds.
            let part = asked.min(balance.max(0));
            let leased_after = (leased - asked).max(0);
            let extra = overage.min(((balance - part) - leased_after).max(0));
            let charged = part + extra;
            let after = balance - charged;
            balances.insert(row.user_id, (after, leased_after));
            row.charged = MicroCredits(charged);
            balance_after = Some(MicroCredits(after));
            let key = row.key_id.map(|k| k.to_string());
            let user_totals = totals.users.entry(row.user_id).or_default();
            user_totals.0 += charged;
            user_totals.1 += asked;
            if let Some(lease) = s.lease_id.filter(|_| asked > 0) {
                *totals.leases.entry(lease).or_default() += asked;
            }
            if charged > 0 {
                if let Some(k) = &key {
                    *totals.keys.entry(k.clone()).or_default() += charged;
                }
                let minute = ms(row.created_at) / 60_000;
                *totals.buckets.entry((row.user_id, key.clone().unwrap_or_default(), minute)).or_default() += charged;
                debits.push(Debit {
                    id,
                    user: row.user_id,
                    key,
                    amount: -charged,
                    balance_after: after,
                    request_id: row.request_id.clone(),
                    created_at: ms(row.created_at),
                });
            }
        }
        results.push(SettleResult { usage_id: id, outcome, charged: row.charged, balance_after });
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
    apply_totals(tx, &totals, &balances).await?;
    Ok(results)
}

/// Usage ids of the batch that are already recorded (a retried flush).
async fn existing_usage(tx: &mut Transaction<'static, Sqlite>, batch: &[Settlement]) -> StoreResult<HashSet<Uuid>> {
    let mut found = HashSet::new();
    for chunk in batch.chunks(500) {
        let sql = format!("SELECT id FROM usage_logs WHERE id IN ({})", vec!["?"; chunk.len()].join(", "));
        let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false);
        for s in chunk {
            q = q.bind(s.usage.id.to_string());
        }
        for id in q.fetch_all(&mut **tx).await? {
            if let Ok(id) = Uuid::parse_str(&id) {
                found.insert(id);
            }
        }
    }
    Ok(found)
}

const DEBITS_PER_STATEMENT: usize = 50;

async fn insert_debits(tx: &mut Transaction<'static, Sqlite>, debits: &[Debit]) -> StoreResult<()> {
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
        for d in rows {
            q = q
                .bind(d.id.to_string())
                .bind(d.user.to_string())
                .bind(d.amount)
                .bind(d.balance_after)
                .bind(format!("usage:{}", d.id))
                .bind(d.request_id.clone())
                .bind(d.created_at)
                .bind(d.key.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn apply_totals(
    tx: &mut Transaction<'static, Sqlite>,
    totals: &Totals,
    balances: &HashMap<UserId, (i64, i64)>,
) -> StoreResult<()> {
    let now = ms(OffsetDateTime::now_utc());
    for (user, (_, leased)) in &totals.users {
        let Some((balance, _)) = balances.get(user) else { continue };
        sqlx::query(
            "UPDATE credit_balances SET balance_micros = ?, leased_micros = MAX(0, leased_micros - ?), updated_at = ? \
             WHERE user_id = ?",
        )
        .bind(balance)
        .bind(leased)
        .bind(now)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    }
    for (lease, amount) in &totals.leases {
        sqlx::query("UPDATE credit_leases SET amount_micros = MAX(0, amount_micros - ?) WHERE id = ?")
            .bind(amount)
            .bind(lease.to_string())
            .execute(&mut **tx)
            .await?;
    }
    for (key, amount) in &totals.keys {
        sqlx::query("UPDATE api_keys SET spent_micros = spent_micros + ? WHERE id = ?")
            .bind(amount)
            .bind(key)
            .execute(&mut **tx)
            .await?;
    }
    for ((user, key, minute), amount) in &totals.buckets {
        sqlx::query(
            "INSERT INTO spend_buckets (user_id, key_id, minute, spent_micros) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, key_id, minute) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros",
        )
        .bind(user.to_string())
        .bind(key)
        .bind(minute)
        .bind(amount)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
