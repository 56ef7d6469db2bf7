//! Accounts and credits as operators and (later) the dashboard change them.
//! Invariant: every change of a balance is a ledger transaction with an idempotency key.

use std::sync::Arc;

use layers_domain::{MicroCredits, Tier, UserId};
use layers_store::{
    CapOverrides, LedgerOutcome, NewTransaction, NewUser, RateOverrides, Severity, Store, TransactionKind, User,
    UserStatus,
};
use time::OffsetDateTime;

pub use layers_store::{UsageCursor, UsageRecord};

use crate::audit::Audit;
use crate::broadcast::{Broadcaster, Notice};
use crate::error::{ServiceError, ServiceResult};

#[derive(Debug)]
pub struct AccountService {
    store: Arc<dyn Store>,
    audit: Audit,
    broadcaster: Broadcaster,
}

/// A balance change an operator asked for.
#[derive(Debug)]
pub struct CreditChange {
    pub user: UserId,
    pub amount: MicroCredits,
    pub reason: String,
    /// Makes a retried command apply once; generated when absent.
    pub idempotency_key: Option<String>,
}

impl AccountService {
    pub fn new(store: Arc<dyn Store>, audit: Audit, broadcaster: Broadcaster) -> AccountService {
        AccountService { store, audit, broadcaster }
    }

    pub async fn create_user(&self, email: &str, tier: Tier) -> ServiceResult<User> {
        let email = normalize_email(email)?;
        let user = self
            .store
            .create_user(&NewUser { id: UserId::random(), email, tier, created_at: OffsetDateTime::now_utc() })
            .await?;
        self.audit.info(Some(user.id), "account_created", serde_json::json!({"tier": tier})).await;
        Ok(user)
    }

    /// Tells every node the account changed (its status, its limits).
    pub async fn announce(&self, user: UserId) {
        self.broadcaster.publish(Notice::Account(user)).await;
    }

    pub async fn user_by_email(&self, email: &str) -> ServiceResult<User> {
        let email = normalize_email(email)?;
        self.store.user_by_email(&email).await?.ok_or(ServiceError::NotFound("account"))
    }

    /// Changes the tier; every node applies it within a poll of the invalidation feed.
    pub async fn set_tier(&self, user: UserId, tier: Tier) -> ServiceResult<()> {
        self.store.set_tier(user, tier).await?;
        self.broadcaster.publish(Notice::Account(user)).await;
        self.audit.info(Some(user), "tier_changed", serde_json::json!({"tier": tier})).await;
        Ok(())
    }

    /// Suspends an account (every node refuses its keys within a second, and its sessions end)
    /// or lifts the suspension; doing it twice changes nothing more.
    pub async fn set_status(&self, user: UserId, status: UserStatus) -> ServiceResult<()> {
        let account = self.store.user(user).await?.ok_or(ServiceError::NotFound("account"))?;
        // A deleted account stays suspended: its erasure is not undone by lifting a suspension.
        if account.email.ends_with("@deleted.invalid") {
            return Err(ServiceError::Invalid("this account was deleted"));
        }
        let before = account.status;
        if before == status {
            return Ok(());
        }
        self.store.set_user_status(user, status).await?;
        self.broadcaster.publish(Notice::Account(user)).await;
        let event = match status {
            UserStatus::Suspended => {
                let sessions = self.store.revoke_all_sessions(user, OffsetDateTime::now_utc()).await?;
                self.audit
                    .record(
                        Some(user),
                        "account_suspended",
                        serde_json::json!({"sessions_ended": sessions}),
                        Severity::Critical,
                        None,
                    )
                    .await;
                return Ok(());
            }
            UserStatus::Active => "account_unsuspended",
        };
        self.audit.record(Some(user), event, serde_json::json!({}), Severity::Warning, None).await;
        Ok(())
    }

    /// Ends every session of one account (an operator's "log out this user").
    pub async fn revoke_sessions(&self, user: UserId) -> ServiceResult<u64> {
        let n = self.store.revoke_all_sessions(user, OffsetDateTime::now_utc()).await?;
        self.audit
            .record(
                Some(user),
                "sessions_revoked",
                serde_json::json!({"sessions": n, "by": "operator"}),
                Severity::Warning,
                None,
            )
            .await;
        Ok(n)
    }

    /// Ends every session of every account (an operator's "log out everyone").
    pub async fn revoke_every_session(&self) -> ServiceResult<u64> {
        let n = self.store.revoke_every_session(OffsetDateTime::now_utc()).await?;
        self.audit
            .record(None, "all_sessions_revoked", serde_json::json!({"sessions": n}), Severity::Critical, None)
            .await;
        Ok(n)
    }

    /// Overrides the tier's spend caps for this account (`None` inherits the tier's).
    pub async fn set_caps(&self, user: UserId, caps: CapOverrides) -> ServiceResult<()> {
        self.store.set_user_caps(user, caps).await?;
        self.broadcaster.publish(Notice::Account(user)).await;
        self.audit
            .info(
                Some(user),
                "spend_caps_changed",
                serde_json::json!({"per_request_micros": caps.per_request.map(|m| m.0),
                                   "per_hour_micros": caps.per_hour.map(|m| m.0)}),
            )
            .await;
        Ok(())
    }

    /// Overrides the tier's rate limits for this account (`None` inherits the tier's).
    pub async fn set_rate(&self, user: UserId, rate: RateOverrides) -> ServiceResult<()> {
        self.store.set_user_rate(user, rate).await?;
        self.broadcaster.publish(Notice::Account(user)).await;
        self.audit
            .info(
                Some(user),
                "rate_limits_changed",
                serde_json::json!({"requests_per_minute": rate.requests_per_minute,
                                   "tokens_per_minute": rate.tokens_per_minute}),
            )
            .await;
        Ok(())
    }

    /// The account's usage, newest first; `before` continues after a previous page.
    pub async fn recent_usage(
        &self,
        user: UserId,
        limit: u32,
        before: Option<UsageCursor>,
    ) -> ServiceResult<Vec<layers_store::UsageRecord>> {
        Ok(self.store.recent_usage(user, limit, before).await?)
    }

    /// One request of the account by its request id (the newest, if the client reused ids).
    pub async fn generation(&self, user: UserId, request_id: &str) -> ServiceResult<Option<layers_store::UsageRecord>> {
        Ok(self.store.usage_by_request(user, request_id).await?)
    }

    pub async fn balance(&self, user: UserId) -> ServiceResult<MicroCredits> {
        Ok(self.store.balance(user).await?)
    }

    /// Grants (positive) or adjusts (negative) credits, through the ledger.
    pub async fn change_credits(&self, change: CreditChange) -> ServiceResult<MicroCredits> {
        let reason = change.reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::Invalid("a reason is required"));
        }
        if change.amount == MicroCredits::ZERO {
            return Err(ServiceError::Invalid("the amount must not be zero"));
        }
        let kind = if change.amount.is_positive() { TransactionKind::Grant } else { TransactionKind::Adjustment };
        let key = change.idempotency_key.unwrap_or_else(|| format!("{}:{}", kind.as_str(), uuid::Uuid::new_v4()));
        let outcome = self
            .store
            .apply_transaction(&NewTransaction {
                id: uuid::Uuid::new_v4(),
                user_id: change.user,
                kind,
                amount: change.amount,
                idempotency_key: key,
                reason: Some(reason.to_owned()),
                request_id: None,
                allow_negative: false,
                created_at: OffsetDateTime::now_utc(),
            })
            .await?;
        match outcome {
            LedgerOutcome::Applied { balance_after } => {
                let event = if kind == TransactionKind::Grant { "credits_granted" } else { "credits_adjusted" };
                self.audit.info(Some(change.user), event, serde_json::json!({"micro_credits": change.amount.0})).await;
                Ok(balance_after)
            }
            LedgerOutcome::Duplicate => self.balance(change.user).await,
            LedgerOutcome::Insufficient { balance } => {
                Err(ServiceError::Refused(format!("the balance ({balance} credits) cannot cover this adjustment")))
            }
        }
    }
}

/// Trims and lower-cases an e-mail address and checks its basic shape.
pub fn normalize_email(raw: &str) -> ServiceResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || "\"<>()[],;:\\".contains(c))
        && email.matches('@').count() == 1
        // Exactly what a mail transport reads as the address: no display name or route may
        // send mail elsewhere than the address stored.
        && email.parse::<lettre::Address>().is_ok_and(|a| a.as_ref() == email);
    if valid {
        Ok(email)
    } else {
        Err(ServiceError::InvalidEmail)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails() {
        assert_eq!(normalize_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for sneaky in ["\"victim@corp.com\"<attacker@evil.com>", "a@b.com<c@d.com>", "a@b@c.com", "a(b)@c.com"] {
            assert!(normalize_email(sneaky).is_err(), "{sneaky}");
        }
        for bad in ["", "alice", "@x.com", "a@b", "a b@c.com", "a@.com", "a@com."] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
