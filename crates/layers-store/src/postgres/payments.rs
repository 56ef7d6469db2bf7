//! Payments through Stripe on PostgreSQL: each event applied as the account's user (row-level
//! security), under the balance row's lock, with its record.

use async_trait::async_trait;
use layers_domain::payments::refunds::PaidGrant;
use layers_domain::{MicroCredits, Tier, UserId};
use sqlx::{Postgres, Row};
use time::OffsetDateTime;

use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::payments::{self, NewPayment, PaymentTx};
use crate::records::{
    AutoTopUp, BillingAccount, CheckoutRecord, InvoiceRecord, LedgerOutcome, NewTransaction, PaymentEffect,
    PaymentGrant, PaymentOutcome, StripeEventRecord, SubscriptionState,
};
use crate::traits::PaymentStore;

struct Tx(sqlx::Transaction<'static, Postgres>);

fn tier_column(text: Option<String>) -> StoreResult<Option<Tier>> {
    text.map(|t| t.parse().map_err(|_| StoreError::Corrupt { column: "plan" })).transpose()
}

async fn ensure_billing_row(conn: &mut sqlx::PgConnection, user: UserId, at: OffsetDateTime) -> StoreResult<()> {
    sqlx::query("INSERT INTO billing_accounts (user_id, updated_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
        .bind(user.0)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl PaymentTx for Tx {
    async fn insert_event(&mut self, user: UserId, e: &StripeEventRecord, at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO stripe_events (event_id, user_id, event_type, processed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&e.id)
        .bind(user.0)
        .bind(&e.event_type)
        .bind(at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn lock_account(&mut self, user: UserId) -> StoreResult<()> {
        sqlx::query("SELECT 1 FROM credit_balances WHERE user_id = $1 FOR UPDATE")
            .bind(user.0)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_payment(&mut self, user: UserId, g: &PaymentGrant, at: OffsetDateTime) -> StoreResult<NewPayment> {
        let done = sqlx::query(
            "INSERT INTO stripe_payments (payment_ref, user_id, paid_cents, granted_micros, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_ref) DO NOTHING",
        )
        .bind(&g.payment_ref)
        .bind(user.0)
        .bind(g.paid_cents)
        .bind(g.credits.0)
        .bind(at)
        .execute(&mut *self.0)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(NewPayment::Inserted);
        }
        let early: Option<i64> = sqlx::query_scalar(
            "SELECT refunded_cents FROM stripe_payments WHERE payment_ref = $1 AND user_id = $2 AND pending",
        )
        .bind(&g.payment_ref)
        .bind(user.0)
        .fetch_optional(&mut *self.0)
        .await?;
        let Some(refunded_cents) = early else { return Ok(NewPayment::Duplicate) };
        sqlx::query(
            "UPDATE stripe_payments SET paid_cents = $1, granted_micros = $2, refunded_cents = 0, \
             refunded_micros = 0, pending = false WHERE payment_ref = $3 AND user_id = $4",
        )
        .bind(g.paid_cents)
        .bind(g.credits.0)
        .bind(&g.payment_ref)
        .bind(user.0)
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
             created_at) VALUES ($1, $2, 0, 0, $3, true, $4) ON CONFLICT (payment_ref) DO UPDATE \
             SET refunded_cents = GREATEST(stripe_payments.refunded_cents, excluded.refunded_cents) \
             WHERE stripe_payments.pending AND stripe_payments.user_id = excluded.user_id",
        )
        .bind(payment_ref)
        .bind(user.0)
        .bind(cents)
        .bind(at)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn paid_grant(&mut self, user: UserId, payment_ref: &str) -> StoreResult<Option<PaidGrant>> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT paid_cents, granted_micros, refunded_cents, refunded_micros FROM stripe_payments \
             WHERE payment_ref = $1 AND user_id = $2 AND NOT pending",
        )
        .bind(payment_ref)
        .bind(user.0)
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
            "UPDATE stripe_payments SET refunded_cents = $1, refunded_micros = $2 WHERE payment_ref = $3 AND user_id = $4",
        )
        .bind(p.refunded_cents)
        .bind(p.refunded_micros)
        .bind(payment_ref)
        .bind(user.0)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn ledger(&mut self, t: &NewTransaction) -> StoreResult<LedgerOutcome> {
        super::ledger::apply_entry(&mut self.0, t).await
    }

    async fn complete_checkout(&mut self, user: UserId, session: &str, at: OffsetDateTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE stripe_checkouts SET completed_at = COALESCE(completed_at, $1) WHERE session_id = $2 AND user_id = $3",
        )
        .bind(at)
        .bind(session)
        .bind(user.0)
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
             VALUES ($1, $2, $3, $4, 'open', $5) ON CONFLICT (dispute_id) DO NOTHING",
        )
        .bind(id)
        .bind(user.0)
        .bind(payment_ref)
        .bind(debited)
        .bind(at)
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
            "UPDATE stripe_disputes SET status = $1, closed_at = $2 WHERE dispute_id = $3 AND user_id = $4 \
             AND status = 'open' RETURNING debited_micros",
        )
        .bind(if won { "won" } else { "lost" })
        .bind(at)
        .bind(id)
        .bind(user.0)
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
            "UPDATE billing_accounts SET subscription_id = $1, subscription_status = $2, plan = $3, period_end = $4, \
             observed_at = $5, updated_at = $6 WHERE user_id = $7 AND (observed_at IS NULL OR observed_at <= $5)",
        )
        .bind(&s.subscription_id)
        .bind(&s.status)
        .bind(s.plan.map(Tier::as_str))
        .bind(s.period_end)
        .bind(s.observed_at)
        .bind(at)
        .bind(user.0)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tier(&mut self, user: UserId) -> StoreResult<Tier> {
        let tier: String = sqlx::query_scalar("SELECT tier FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&mut *self.0)
            .await?
            .ok_or(StoreError::NotFound { entity: "user" })?;
        tier.parse().map_err(|_| StoreError::Corrupt { column: "tier" })
    }

    async fn set_tier(&mut self, user: UserId, tier: Tier, at: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE users SET tier = $1, updated_at = $2 WHERE id = $3")
            .bind(tier.as_str())
            .bind(at)
            .bind(user.0)
            .execute(&mut *self.0)
            .await?;
        sqlx::query("INSERT INTO cache_events (scope, key_hash, user_id) VALUES ('account', NULL, $1)")
            .bind(user.0)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn upsert_invoice(&mut self, user: UserId, i: &InvoiceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO stripe_invoices (invoice_id, user_id, number, amount_paid_cents, currency, status, \
             hosted_url, pdf_url, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (invoice_id) DO UPDATE \
             SET number = excluded.number, amount_paid_cents = excluded.amount_paid_cents, \
             status = CASE WHEN stripe_invoices.status = 'paid' THEN 'paid' ELSE excluded.status END, \
             hosted_url = excluded.hosted_url, pdf_url = excluded.pdf_url WHERE stripe_invoices.user_id = excluded.user_id",
        )
        .bind(&i.id)
        .bind(user.0)
        .bind(&i.number)
        .bind(i.amount_paid_cents)
        .bind(&i.currency)
        .bind(&i.status)
        .bind(&i.hosted_url)
        .bind(&i.pdf_url)
        .bind(i.created_at)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn refunds_since(&mut self, user: UserId, since: OffsetDateTime) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*)::bigint FROM credit_transactions WHERE user_id = $1 AND kind = 'refund' AND created_at >= $2",
        )
        .bind(user.0)
        .bind(since)
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn flag_review(&mut self, user: UserId, at: OffsetDateTime) -> StoreResult<bool> {
        ensure_billing_row(&mut self.0, user, at).await?;
        let done = sqlx::query(
            "UPDATE billing_accounts SET review_flagged_at = $1 WHERE user_id = $2 AND review_flagged_at IS NULL",
        )
        .bind(at)
        .bind(user.0)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_attempt(&mut self, user: UserId, trigger: &str, state: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE auto_topup_attempts SET state = $1 WHERE user_id = $2 AND trigger_key = $3 AND state = 'pending'",
        )
        .bind(state)
        .bind(user.0)
        .bind(trigger)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_topup_failures(&mut self, user: UserId) -> StoreResult<Option<(i32, bool)>> {
        Ok(sqlx::query_as("SELECT failures, enabled FROM auto_topups WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn set_auto_topup_failures(&mut self, user: UserId, failures: i32, enabled: bool) -> StoreResult<()> {
        sqlx::query("UPDATE auto_topups SET failures = $1, enabled = $2 WHERE user_id = $3")
            .bind(failures)
            .bind(enabled)
            .bind(user.0)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}

async fn billing_account(conn: &mut sqlx::PgConnection, user: UserId) -> StoreResult<BillingAccount> {
    let row = sqlx::query(
        "SELECT stripe_customer, subscription_id, subscription_status, plan, period_end, review_flagged_at \
         FROM billing_accounts WHERE user_id = $1",
    )
    .bind(user.0)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(BillingAccount::default()) };
    Ok(BillingAccount {
        customer: row.try_get("stripe_customer")?,
        subscription_id: row.try_get("subscription_id")?,
        subscription_status: row.try_get("subscription_status")?,
        plan: tier_column(row.try_get("plan")?)?,
        period_end: row.try_get("period_end")?,
        review_flagged_at: row.try_get("review_flagged_at")?,
    })
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn billing_account(&self, user: UserId) -> StoreResult<BillingAccount> {
        let mut tx = self.begin_as(user).await?;
        billing_account(&mut tx, user).await
    }

    async fn set_stripe_customer(&self, user: UserId, customer: &str, at: OffsetDateTime) -> StoreResult<String> {
        let mut tx = self.begin_as(user).await?;
        ensure_billing_row(&mut tx, user, at).await?;
        sqlx::query("UPDATE billing_accounts SET stripe_customer = $1 WHERE user_id = $2 AND stripe_customer IS NULL")
            .bind(customer)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT stripe_customer FROM billing_accounts WHERE user_id = $1")
                .bind(user.0)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        stored.ok_or(StoreError::NotFound { entity: "stripe customer" })
    }

    async fn user_of_stripe_customer(&self, customer: &str) -> StoreResult<Option<UserId>> {
        let id: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT layers_stripe_customer_owner($1)").bind(customer).fetch_one(self.pool()).await?;
        Ok(id.map(UserId))
    }

    async fn apply_payment(
        &self,
        user: UserId,
        event: Option<&StripeEventRecord>,
        effects: &[PaymentEffect],
        at: OffsetDateTime,
    ) -> StoreResult<PaymentOutcome> {
        let mut tx = Tx(self.begin_as(user).await?);
        let outcome = payments::apply(&mut tx, user, event, effects, at).await?;
        if !outcome.duplicate {
            tx.0.commit().await?;
        }
        Ok(outcome)
    }

    async fn record_checkout(&self, c: &CheckoutRecord) -> StoreResult<()> {
        let mut tx = self.begin_as(c.user_id).await?;
        sqlx::query(
            "INSERT INTO stripe_checkouts (session_id, user_id, mode, credits_micros, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(&c.session_id)
        .bind(c.user_id.0)
        .bind(&c.mode)
        .bind(c.credits.0)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkout(&self, user: UserId, session_id: &str) -> StoreResult<Option<CheckoutRecord>> {
        let mut tx = self.begin_as(user).await?;
        let row: Option<(String, i64, OffsetDateTime, Option<OffsetDateTime>)> = sqlx::query_as(
            "SELECT mode, credits_micros, created_at, completed_at FROM stripe_checkouts \
             WHERE session_id = $1 AND user_id = $2",
        )
        .bind(session_id)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.map(|(mode, credits, created, completed)| CheckoutRecord {
            session_id: session_id.to_owned(),
            user_id: user,
            mode,
            credits: MicroCredits(credits),
            created_at: created,
            completed_at: completed,
        }))
    }

    async fn invoices(&self, user: UserId, limit: u32) -> StoreResult<Vec<InvoiceRecord>> {
        let mut tx = self.begin_as(user).await?;
        let rows = sqlx::query(
            "SELECT invoice_id, number, amount_paid_cents, currency, status, hosted_url, pdf_url, created_at \
             FROM stripe_invoices WHERE user_id = $1 ORDER BY created_at DESC, invoice_id DESC LIMIT $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
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
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn auto_topup(&self, user: UserId) -> StoreResult<Option<AutoTopUp>> {
        let mut tx = self.begin_as(user).await?;
        let row: Option<(bool, i64, i64, i32, OffsetDateTime)> = sqlx::query_as(
            "SELECT enabled, threshold_micros, amount_credits, failures, updated_at FROM auto_topups WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.map(|(enabled, threshold, amount_credits, failures, updated)| AutoTopUp {
            enabled,
            threshold: MicroCredits(threshold),
            amount_credits,
            failures,
            updated_at: updated,
        }))
    }

    async fn set_auto_topup(&self, user: UserId, rule: &AutoTopUp) -> StoreResult<()> {
        let mut tx = self.begin_as(user).await?;
        sqlx::query(
            "INSERT INTO auto_topups (user_id, enabled, threshold_micros, amount_credits, failures, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (user_id) DO UPDATE SET enabled = excluded.enabled, \
             threshold_micros = excluded.threshold_micros, amount_credits = excluded.amount_credits, \
             failures = CASE WHEN excluded.enabled AND NOT auto_topups.enabled THEN 0 ELSE auto_topups.failures END, \
             updated_at = excluded.updated_at",
        )
        .bind(user.0)
        .bind(rule.enabled)
        .bind(rule.threshold.0)
        .bind(rule.amount_credits)
        .bind(rule.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_auto_topup(&self, user: UserId, trigger: &str, at: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.begin_as(user).await?;
        let stale = at - time::Duration::seconds(layers_domain::payments::autotopup::RETRY_UNANSWERED_AFTER_SECS);
        let done = sqlx::query(
            "INSERT INTO auto_topup_attempts (user_id, trigger_key, state, created_at) VALUES ($1, $2, 'pending', $3) \
             ON CONFLICT (user_id, trigger_key) DO UPDATE SET created_at = excluded.created_at \
             WHERE auto_topup_attempts.state = 'pending' AND auto_topup_attempts.created_at < $4",
        )
        .bind(user.0)
        .bind(trigger)
        .bind(at)
        .bind(stale)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_topups_since(&self, user: UserId, since: OffsetDateTime) -> StoreResult<i64> {
        let mut tx = self.begin_as(user).await?;
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*)::bigint FROM auto_topup_attempts WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(user.0)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?)
    }
}
