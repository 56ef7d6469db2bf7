//! The credit ledger on SQLite: a transaction row and the balance move together.

use async_trait::async_trait;
use layers_domain::{MicroCredits, UserId};

use super::rows::{self, ms};
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CreditTransaction, LedgerOutcome, NewTransaction, StatementLine, TransactionKind};
use crate::settlement::{self, EntryRefused};
use crate::traits::LedgerStore;
use time::OffsetDateTime;

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn apply_transaction(&self, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
        // BEGIN IMMEDIATE holds the write lock, so the checks in `apply_entry` cannot race.
        let mut tx = self.begin_write().await?;
        let outcome = apply_entry(&mut tx, t).await?;
        if matches!(outcome, LedgerOutcome::Applied { .. }) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    async fn balance(&self, user: UserId) -> StoreResult<MicroCredits> {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance_micros FROM credit_balances WHERE user_id = ?")
            .bind(user.to_string())
            .fetch_optional(self.pool())
            .await?;
        balance.map(MicroCredits).ok_or(StoreError::NotFound { entity: "credit balance" })
    }

    async fn transactions(&self, user: UserId, limit: u32) -> StoreResult<Vec<CreditTransaction>> {
        let rows = sqlx::query(
            "SELECT id, user_id, kind, amount_micros, balance_after_micros, idempotency_key, reason, request_id, \
             created_at FROM credit_transactions WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rows::transaction).collect()
    }

    async fn ledger_sum(&self, user: UserId) -> StoreResult<MicroCredits> {
        let sum: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(amount_micros), 0) FROM credit_transactions WHERE user_id = ?")
                .bind(user.to_string())
                .fetch_one(self.pool())
                .await?;
        Ok(MicroCredits(sum))
    }

    async fn statement(&self, user: UserId, limit: u32) -> StoreResult<Vec<StatementLine>> {
        // `seg` numbers the stretches between transactions other than usage; within one, usage
        // only lowers the balance, so its lowest balance is the one after the stretch.
        let rows = sqlx::query(
            "WITH t AS (SELECT kind, amount_micros, balance_after_micros, created_at, reason, \
                        SUM(CASE WHEN kind <> 'usage' THEN 1 ELSE 0 END) OVER (ORDER BY created_at, rowid) AS seg \
                        FROM credit_transactions WHERE user_id = ?1) \
             SELECT kind, amount_micros AS amount, balance_after_micros AS after, created_at AS at, 1 AS n, reason \
             FROM t WHERE kind <> 'usage' \
             UNION ALL \
             SELECT 'usage', SUM(amount_micros), MIN(balance_after_micros), MAX(created_at), COUNT(*), NULL \
             FROM t WHERE kind = 'usage' GROUP BY created_at / 86400000, seg \
             ORDER BY at DESC LIMIT ?2",
        )
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                let kind: String = row.try_get("kind")?;
                Ok(StatementLine {
                    kind: TransactionKind::from_db(&kind).ok_or(StoreError::Corrupt { column: "kind" })?,
                    amount: MicroCredits(row.try_get("amount")?),
                    balance_after: MicroCredits(row.try_get("after")?),
                    at: super::rows::from_ms(row.try_get("at")?),
                    count: row.try_get("n")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn last_credit_at(&self, user: UserId) -> StoreResult<Option<OffsetDateTime>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(created_at) FROM credit_transactions WHERE user_id = ? AND amount_micros > 0",
        )
        .bind(user.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(at.map(super::rows::from_ms))
    }
}

/// Appends one ledger entry inside the caller's transaction (which must hold the balance's
/// lock: SQLite's write lock, or PostgreSQL's row lock taken here); the caller commits.
pub(super) async fn apply_entry(conn: &mut sqlx::SqliteConnection, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
    let duplicate: Option<i64> = sqlx::query_scalar("SELECT 1 FROM credit_transactions WHERE idempotency_key = ?")
        .bind(&t.idempotency_key)
        .fetch_optional(&mut *conn)
        .await?;
    if duplicate.is_some() {
        return Ok(LedgerOutcome::Duplicate);
    }
    let (balance, leased): (i64, i64) =
        sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = ?")
            .bind(t.user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound { entity: "credit balance" })?;
    let (after, revoke) = match settlement::entry(t, balance, leased) {
        Ok(decided) => decided,
        Err(EntryRefused::Outcome(outcome)) => return Ok(outcome),
        Err(EntryRefused::Error(err)) => return Err(err),
    };
    if revoke {
        // A refund took credit that leases hold: they end, and charges against them are
        // refused, so usage never takes the balance further down.
        sqlx::query("UPDATE credit_leases SET state = 'expired', ended_at = ? WHERE user_id = ? AND state = 'active'")
            .bind(ms(t.created_at))
            .bind(t.user_id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    let at = ms(t.created_at);
    sqlx::query(
        "INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros, \
         idempotency_key, reason, request_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.id.to_string())
    .bind(t.user_id.to_string())
    .bind(t.kind.as_str())
    .bind(t.amount.0)
    .bind(after.0)
    .bind(&t.idempotency_key)
    .bind(&t.reason)
    .bind(&t.request_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE credit_balances SET balance_micros = ?, updated_at = ?, \
         leased_micros = CASE WHEN ? THEN 0 ELSE leased_micros END WHERE user_id = ?",
    )
    .bind(after.0)
    .bind(at)
    .bind(revoke)
    .bind(t.user_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(LedgerOutcome::Applied { balance_after: after })
}
