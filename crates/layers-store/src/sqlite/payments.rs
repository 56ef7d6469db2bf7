//! Payments through Stripe on SQLite: each event applied under the write lock, with its record.

use async_trait::async_trait;
use layers_domain::payments::refunds::PaidGrant;
use layers_domain::{MicroCredits, Tier, UserId};
use sqlx::{Row, Sqlite};
use time::OffsetDateTime;

use super::accounts::INSERT_ACCOUNT_EVENT;
use super::rows::{from_ms, ms, opt_ms};
use super::SqliteStore;
use crate::error::{StoreError, StoreResult};
use crate::payments::{self, NewPayment, PaymentTx};
use crate::records::{
    AutoTopUp, BillingAccount, CheckoutRecord, InvoiceRecord, LedgerOutcome, NewTransaction, PaymentEffect,
    PaymentGrant, PaymentOutcome, StripeEventRecord, SubscriptionState,
};
use crate::traits::PaymentStore;

struct Tx(sqlx::Transaction<'static, Sqlite>);

fn tier_column(text: Option<String>) -> StoreResult<Option<Tier>> {
    text.map(|t| t.parse().map_err(|_| StoreError::Corrupt { column: "plan" })).transpose()
}

async fn ensure_billing_row(conn: &mut sqlx::SqliteConnection, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
    sqlx::query("INSERT INTO billing_accounts (user_id, updated_at) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING")
        .bind(user.to_string())
        .bind(ms(at))
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl PaymentTx for Tx {
    async fn insert_event(&mut self, user: UserId, e: &StripeEventRecord, at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO stripe_events (event_id, user_id, event_type, processed_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&e.id)
        .bind(user.to_string())
        .bind(&e.event_type)
        .bind(ms(at))
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn lock_account(&mut self, _user: UserId) -> StoreResult<()> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        Ok(())
    }

    async fn insert_payment(&mut self, user: UserId, g: &PaymentGrant, at: OffsetDateTime) -> StoreResult<NewPayment> {
        let done = sqlx::query(
            "INSERT INTO stripe_payments (payment_ref, user_id, paid_cents, granted_micros, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (payment_ref) DO NOTHING",
        )
        .bind(&g.payment_ref)
        .bind(user.to_string())
        .bind(g.paid_cents)
        .bind(g.credits.0)
        .bind(ms(at))
        .execute(&mut *self.0)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(NewPayment::Inserted);
        }
        let early: Option<i64> = sqlx::query_scalar(
            "SELECT refunded_cents FROM stripe_payments WHERE payment_ref = ? AND user_id = ? AND pending",
        )
        .bind(&g.payment_ref)
        .bind(user.to_string())
        .fetch_optional(&mut *self.0)
        .await?;
        let Some(refunded_cents) = early else { return Ok(NewPayment::Duplicate) };
        sqlx::query(
            "UPDATE stripe_payments SET paid_cents = ?, granted_micros = ?, refunded_cents = 0, \
             refunded_micros = 0, pending = 0 WHERE payment_ref = ? AND user_id = ?",
        )
        .bind(g.paid_cents)
        .bind(g.credits.0)
        .bind(&g.payment_ref)
        .bind(user.to_string())
        .execute(&mut *self.0)
        .await?;
        Ok(NewPayment::RefundedEarly { refunded_cents })
    }

    async fn record_early_refund(
        &mut self,
        user: UserId,
        payment_ref: &str,
        cents: i64,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO stripe_payments (payment_ref, user_id, paid_cents, granted_micros, refunded_cents, pending, \
             created_at) VALUES (?, ?, 0, 0, ?, 1, ?) ON CONFLICT (payment_ref) DO UPDATE \
             SET refunded_cents = MAX(stripe_payments.refunded_cents, excluded.refunded_cents) \
             WHERE stripe_payments.pending AND stripe_payments.user_id = excluded.user_id",
        )
        .bind(payment_ref)
        .bind(user.to_string())
        .bind(cents)
        .bind(ms(at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn paid_grant(&mut self, user: UserId, payment_ref: &str) -> StoreResult<Option<PaidGrant>> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT paid_cents, granted_micros, refunded_cents, refunded_micros FROM stripe_payments \
             WHERE payment_ref = ? AND user_id = ? AND NOT pending",
        )
        .bind(payment_ref)
        .bind(user.to_string())
        .fetch_optional(&mut *self.0)
        .await?;
        Ok(row.map(|(paid_cents, granted_micros, refunded_cents, refunded_micros)| PaidGrant {
            paid_cents,
            granted_micros,
            refunded_cents,
            refunded_micros,
        }))
    }

    async fn set_refunded(&mut self, user: UserId, payment_ref: &str, p: &PaidGrant) -> StoreResult<()> {
        sqlx::query(
            "UPDATE stripe_payments SET refunded_cents = ?, refunded_micros = ? WHERE payment_ref = ? AND user_id = ?",
        )
        .bind(p.refunded_cents)
        .bind(p.refunded_micros)
        .bind(payment_ref)
        .bind(user.to_string())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn ledger(&mut self, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
        super::ledger::apply_entry(&mut self.0, t).await
    }

    async fn complete_checkout(&mut self, user: UserId, session: &str, at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE stripe_checkouts SET completed_at = COALESCE(completed_at, ?) WHERE session_id = ? AND user_id = ?",
        )
        .bind(ms(at))
        .bind(session)
        .bind(user.to_string())
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_dispute(
        &mut self,
        user: UserId,
        id: &str,
        payment_ref: &str,
        debited: i64,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO stripe_disputes (dispute_id, user_id, payment_ref, debited_micros, status, created_at) \
             VALUES (?, ?, ?, ?, 'open', ?) ON CONFLICT (dispute_id) DO NOTHING",
        )
        .bind(id)
        .bind(user.to_string())
        .bind(payment_ref)
        .bind(debited)
        .bind(ms(at))
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn close_dispute(
        &mut self,
        user: UserId,
        id: &str,
        won: bool,
        at: OffsetDateTime,
    ) -> StoreResult<Option<i64>> {
        let debited: Option<i64> = sqlx::query_scalar(
            "UPDATE stripe_disputes SET status = ?, closed_at = ? WHERE dispute_id = ? AND user_id = ? \
             AND status = 'open' RETURNING debited_micros",
        )
        .bind(if won { "won" } else { "lost" })
        .bind(ms(at))
        .bind(id)
        .bind(user.to_string())
        .fetch_optional(&mut *self.0)
        .await?;
        Ok(debited)
    }

    async fn billing_account(&mut self, user: UserId) -> StoreResult<BillingAccount> {
        billing_account(&mut self.0, user).await
    }

    async fn save_subscription(
        &mut self,
        user: UserId,
        s: &SubscriptionState,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        ensure_billing_row(&mut self.0, user, at).await?;
        let done = sqlx::query(
            "UPDATE billing_accounts SET subscription_id = ?, subscription_status = ?, plan = ?, period_end = ?, \
             observed_at = ?, updated_at = ? WHERE user_id = ? AND (observed_at IS NULL OR observed_at <= ?)",
        )
        .bind(&s.subscription_id)
        .bind(&s.status)
        .bind(s.plan.map(Tier::as_str))
        .bind(opt_ms(s.period_end))
        .bind(ms(s.observed_at))
        .bind(ms(at))
        .bind(user.to_string())
        .bind(ms(s.observed_at))
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tier(&mut self, user: UserId) -> StoreResult<Tier> {
        let tier: String = sqlx::query_scalar("SELECT tier FROM users WHERE id = ?")
            .bind(user.to_string())
            .fetch_optional(&mut *self.0)
            .await?
            .ok_or(StoreError::NotFound { entity: "user" })?;
        tier.parse().map_err(|_| StoreError::Corrupt { column: "tier" })
    }

    async fn set_tier(&mut self, user: UserId, tier: Tier, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE users SET tier = ?, updated_at = ? WHERE id = ?")
            .bind(tier.as_str())
            .bind(ms(at))
            .bind(user.to_string())
            .execute(&mut *self.0)
            .await?;
        sqlx::query(INSERT_ACCOUNT_EVENT).bind(user.to_string()).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn upsert_invoice(&mut self, user: UserId, i: &InvoiceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO stripe_invoices (invoice_id, user_id, number, amount_paid_cents, currency, status, \
             hosted_url, pdf_url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (invoice_id) DO UPDATE \
             SET number = excluded.number, amount_paid_cents = excluded.amount_paid_cents, \
             status = CASE WHEN stripe_invoices.status = 'paid' THEN 'paid' ELSE excluded.status END, \
             hosted_url = excluded.hosted_url, pdf_url = excluded.pdf_url WHERE stripe_invoices.user_id = excluded.user_id",
        )
        .bind(&i.id)
        .bind(user.to_string())
        .bind(&i.number)
        .bind(i.amount_paid_cents)
        .bind(&i.currency)
        .bind(&i.status)
        .bind(&i.hosted_url)
        .bind(&i.pdf_url)
        .bind(ms(i.created_at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn refunds_since(&mut self, user: UserId, since: OffsetDateTime) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM credit_transactions WHERE user_id = ? AND kind = 'refund' AND created_at >= ?",
        )
        .bind(user.to_string())
        .bind(ms(since))
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn flag_review(&mut self, user: UserId, at: OffsetDateTime) -> StoreResult<bool> {
        ensure_billing_row(&mut self.0, user, at).await?;
        let done = sqlx::query(
            "UPDATE billing_accounts SET review_flagged_at = ? WHERE user_id = ? AND review_flagged_at IS NULL",
        )
        .bind(ms(at))
        .bind(user.to_string())
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_attempt(&mut self, user: UserId, trigger: &str, state: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE auto_topup_attempts SET state = ? WHERE user_id = ? AND trigger_key = ? AND state = 'pending'",
        )
        .bind(state)
        .bind(user.to_string())
        .bind(trigger)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_topup_failures(&mut self, user: UserId) -> StoreResult<Option<(i32, bool)>> {
        Ok(sqlx::query_as("SELECT failures, enabled FROM auto_topups WHERE user_id = ?")
            .bind(user.to_string())
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn set_auto_topup_failures(&mut self, user: UserId, failures: i32, enabled: bool) -> StoreResult<()> {
        sqlx::query("UPDATE auto_topups SET failures = ?, enabled = ? WHERE user_id = ?")
            .bind(failures)
            .bind(enabled)
            .bind(user.to_string())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}

async fn billing_account(conn: &mut sqlx::SqliteConnection, user: UserId) -> StoreResult<BillingAccount> {
    let row = sqlx::query(
        "SELECT stripe_customer, subscription_id, subscription_status, plan, period_end, review_flagged_at \
         FROM billing_accounts WHERE user_id = ?",
    )
    .bind(user.to_string())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(BillingAccount::default()) };
    Ok(BillingAccount {
        customer: row.try_get("stripe_customer")?,
        subscription_id: row.try_get("subscription_id")?,
        subscription_status: row.try_get("subscription_status")?,
        plan: tier_column(row.try_get("plan")?)?,
        period_end: row.try_get::<Option<i64>, _>("period_end")?.map(from_ms),
        review_flagged_at: row.try_get::<Option<i64>, _>("review_flagged_at")?.map(from_ms),
    })
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn billing_account(&self, user: UserId) -> StoreResult<BillingAccount> {
        let mut conn = self.pool().acquire().await?;
        billing_account(&mut conn, user).await
    }

    async fn set_stripe_customer(&self, user: UserId, customer: &str, at: OffsetDateTime) -> StoreResult<String> {
        let mut tx = self.begin_write().await?;
        ensure_billing_row(&mut tx, user, at).await?;
        sqlx::query("UPDATE billing_accounts SET stripe_customer = ? WHERE user_id = ? AND stripe_customer IS NULL")
            .bind(customer)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT stripe_customer FROM billing_accounts WHERE user_id = ?")
                .bind(user.to_string())
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        stored.ok_or(StoreError::NotFound { entity: "stripe customer" })
    }

    async fn user_of_stripe_customer(&self, customer: &str) -> StoreResult<Option<UserId>> {
        let id: Option<String> = sqlx::query_scalar("SELECT user_id FROM billing_accounts WHERE stripe_customer = ?")
            .bind(customer)
            .fetch_optional(self.pool())
            .await?;
        id.map(|s| s.parse().map(UserId).map_err(|_| StoreError::Corrupt { column: "user_id" })).transpose()
    }

    async fn apply_payment(
        &self,
        user: UserId,
        event: Option<&StripeEventRecord>,
        effects: &[PaymentEffect],
        at: OffsetDateTime,
    ) -> StoreResult<PaymentOutcome> {
        let mut tx = Tx(self.begin_write().await?);
        let outcome = payments::apply(&mut tx, user, event, effects, at).await?;
        if !outcome.duplicate {
            tx.0.commit().await?;
        }
        Ok(outcome)
    }

    async fn record_checkout(&self, c: &CheckoutRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO stripe_checkouts (session_id, user_id, mode, credits_micros, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(&c.session_id)
        .bind(c.user_id.to_string())
        .bind(&c.mode)
        .bind(c.credits.0)
        .bind(ms(c.created_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn checkout(&self, user: UserId, session_id: &str) -> StoreResult<Option<CheckoutRecord>> {
        let row: Option<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT mode, credits_micros, created_at, completed_at FROM stripe_checkouts \
             WHERE session_id = ? AND user_id = ?",
        )
        .bind(session_id)
        .bind(user.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(mode, credits, created, completed)| CheckoutRecord {
            session_id: session_id.to_owned(),
            user_id: user,
            mode,
            credits: MicroCredits(credits),
            created_at: from_ms(created),
            completed_at: completed.map(from_ms),
        }))
    }

    async fn invoices(&self, user: UserId, limit: u32) -> StoreResult<Vec<InvoiceRecord>> {
        let rows = sqlx::query(
            "SELECT invoice_id, number, amount_paid_cents, currency, status, hosted_url, pdf_url, created_at \
             FROM stripe_invoices WHERE user_id = ? ORDER BY created_at DESC, invoice_id DESC LIMIT ?",
        )
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InvoiceRecord {
                    id: r.try_get("invoice_id")?,
                    number: r.try_get("number")?,
                    amount_paid_cents: r.try_get("amount_paid_cents")?,
                    currency: r.try_get("currency")?,
                    status: r.try_get("status")?,
                    hosted_url: r.try_get("hosted_url")?,
                    pdf_url: r.try_get("pdf_url")?,
                    created_at: from_ms(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn auto_topup(&self, user: UserId) -> StoreResult<Option<AutoTopUp>> {
        let row: Option<(bool, i64, i64, i32, i64)> = sqlx::query_as(
            "SELECT enabled, threshold_micros, amount_credits, failures, updated_at FROM auto_topups WHERE user_id = ?",
        )
        .bind(user.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(enabled, threshold, amount_credits, failures, updated)| AutoTopUp {
            enabled,
            threshold: MicroCredits(threshold),
            amount_credits,
            failures,
            updated_at: from_ms(updated),
        }))
    }

    async fn set_auto_topup(&self, user: UserId, rule: &AutoTopUp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO auto_topups (user_id, enabled, threshold_micros, amount_credits, failures, updated_at) \
             VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (user_id) DO UPDATE SET enabled = excluded.enabled, \
             threshold_micros = excluded.threshold_micros, amount_credits = excluded.amount_credits, \
             failures = CASE WHEN excluded.enabled AND NOT auto_topups.enabled THEN 0 ELSE auto_topups.failures END, \
             updated_at = excluded.updated_at",
        )
        .bind(user.to_string())
        .bind(rule.enabled)
        .bind(rule.threshold.0)
        .bind(rule.amount_credits)
        .bind(ms(rule.updated_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn claim_auto_topup(&self, user: UserId, trigger: &str, at: OffsetDateTime) -> StoreResult<bool> {
        let stale = at - time::Duration::seconds(layers_domain::payments::autotopup::RETRY_UNANSWERED_AFTER_SECS);
        let done = sqlx::query(
            "INSERT INTO auto_topup_attempts (user_id, trigger_key, state, created_at) VALUES (?, ?, 'pending', ?) \
             ON CONFLICT (user_id, trigger_key) DO UPDATE SET created_at = excluded.created_at \
             WHERE auto_topup_attempts.state = 'pending' AND auto_topup_attempts.created_at < ?",
        )
        .bind(user.to_string())
        .bind(trigger)
        .bind(ms(at))
        .bind(ms(stale))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_topups_since(&self, user: UserId, since: OffsetDateTime) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM auto_topup_attempts WHERE user_id = ? AND created_at >= ?")
            .bind(user.to_string())
            .bind(ms(since))
            .fetch_one(self.pool())
            .await?)
    }
}
