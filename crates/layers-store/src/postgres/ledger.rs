//! The credit ledger on PostgreSQL: a transaction row and the balance move together, under the
//! balance row's lock.

use async_trait::async_trait;
use layers_domain::{MicroCredits, UserId};

use super::rows;
use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{CreditTransaction, LedgerOutcome, NewTransaction, StatementLine, TransactionKind};
use crate::settlement::{self, EntryRefused};
use crate::traits::LedgerStore;
use time::OffsetDateTime;

#[async_trait]
impl LedgerStore for PgStore {
    async fn apply_transaction(&self, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
        let mut tx = self.begin_as(t.user_id).await?;
        let outcome = apply_entry(&mut tx, t).await?;
        if matches!(outcome, LedgerOutcome::Applied { .. }) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    async fn balance(&self, user: UserId) -> StoreResult<MicroCredits> {
        let mut tx = self.begin_as(user).await?;
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance_micros FROM credit_balances WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        balance.map(MicroCredits).ok_or(StoreError::NotFound { entity: "credit balance" })
    }

    async fn transactions(&self, user: UserId, limit: u32) -> StoreResult<Vec<CreditTransaction>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(
            "SELECT id, user_id, kind, amount_micros, balance_after_micros, idempotency_key, reason, request_id, \
             created_at FROM credit_transactions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(rows::transaction).collect()
    }

    async fn ledger_sum(&self, user: UserId) -> StoreResult<MicroCredits> {
        let mut tx = self.begin_as(user).await?;
        let sum: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_micros), 0)::bigint FROM credit_transactions WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MicroCredits(sum))
    }

    async fn statement(&self, user: UserId, limit: u32) -> StoreResult<Vec<StatementLine>> {
        let mut tx = self.begin_as(user).await?;
        // `seg` numbers the stretches between transactions other than usage; within one, usage
        // only lowers the balance, so its lowest balance is the one after the stretch.
        let rows = sqlx::query(
            "WITH t AS (SELECT kind, amount_micros, balance_after_micros, created_at, reason, \
                        SUM(CASE WHEN kind <> 'usage' THEN 1 ELSE 0 END) OVER (ORDER BY created_at, id) AS seg \
                        FROM credit_transactions WHERE user_id = $1) \
             SELECT kind, amount_micros AS amount, balance_after_micros AS after, created_at AS at, 1::bigint AS n, reason \
             FROM t WHERE kind <> 'usage' \
             UNION ALL \
             SELECT 'usage', SUM(amount_micros)::bigint, MIN(balance_after_micros), MAX(created_at), COUNT(*)::bigint, NULL \
             FROM t WHERE kind = 'usage' GROUP BY floor(extract(epoch FROM created_at) / 86400), seg \
             ORDER BY at DESC LIMIT $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                let kind: String = row.try_get("kind")?;
                Ok(StatementLine {
                    kind: TransactionKind::from_db(&kind).ok_or(StoreError::Corrupt { column: "kind" })?,
                    amount: MicroCredits(row.try_get("amount")?),
                    balance_after: MicroCredits(row.try_get("after")?),
                    at: row.try_get("at")?,
                    count: row.try_get("n")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn last_credit_at(&self, user: UserId) -> StoreResult<Option<OffsetDateTime>> {
        let mut tx = self.begin_as(user).await?;
        let at: Option<OffsetDateTime> = sqlx::query_scalar(
            "SELECT MAX(created_at) FROM credit_transactions WHERE user_id = $1 AND amount_micros > 0",
        )
        .bind(user.0)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(at)
    }
}

/// Appends one ledger entry inside the caller's transaction (which must hold the balance's
/// lock: SQLite's write lock, or PostgreSQL's row lock taken here); the caller commits.
pub(super) async fn apply_entry(conn: &mut sqlx::PgConnection, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
    // The row lock serialises every movement of this balance, so the duplicate check and
    // the new balance below see all committed entries.
    let (balance, leased): (i64, i64) =
        sqlx::query_as("SELECT balance_micros, leased_micros FROM credit_balances WHERE user_id = $1 FOR UPDATE")
            .bind(t.user_id.0)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound { entity: "credit balance" })?;
    let duplicate: Option<i32> = sqlx::query_scalar("SELECT 1 FROM credit_transactions WHERE idempotency_key = $1")
        .bind(&t.idempotency_key)
        .fetch_optional(&mut *conn)
        .await?;
    if duplicate.is_some() {
        return Ok(LedgerOutcome::Duplicate);
    }
    let (after, revoke) = match settlement::entry(t, balance, leased) {
        Ok(decided) => decided,
        Err(EntryRefused::Outcome(outcome)) => return Ok(outcome),
        Err(EntryRefused::Error(err)) => return Err(err),
    };
    if revoke {
        // A refund took credit that leases hold: they end, and charges against them are
        // refused, so usage never takes the balance further down.
        sqlx::query(
            "UPDATE credit_leases SET state = 'expired', ended_at = now() WHERE user_id = $1 AND state = 'active'",
        )
        .bind(t.user_id.0)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO credit_transactions (id, user_id, kind, amount_micros, balance_after_micros, \
         idempotency_key, reason, request_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.id)
    .bind(t.user_id.0)
    .bind(t.kind.as_str())
    .bind(t.amount.0)
    .bind(after.0)
    .bind(&t.idempotency_key)
    .bind(&t.reason)
    .bind(&t.request_id)
    .bind(t.created_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE credit_balances SET balance_micros = $1, updated_at = $2, \
         leased_micros = CASE WHEN $4 THEN 0 ELSE leased_micros END WHERE user_id = $3",
    )
    .bind(after.0)
    .bind(t.created_at)
    .bind(t.user_id.0)
    .bind(revoke)
    .execute(&mut *conn)
    .await?;
    Ok(LedgerOutcome::Applied { balance_after: after })
}
