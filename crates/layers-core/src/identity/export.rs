//! "Export my data" (GDPR, SPEC §8.5): every row of the account as one JSON document — the
//! account, its keys (names and prefixes, never secrets), the ledger, every usage row, sessions,
//! second factor status, linked sign-in identities and the audit trail. Invariant: no hash, secret or token is in it.

use layers_store::UsageCursor;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use layers_domain::UserId;

use super::{Client, IdentityResult, IdentityService, SessionUser};
use layers_store::Severity;

/// Usage rows read per page.
const PAGE: u32 = 5_000;

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl IdentityService {
    /// The person's own export, from the settings page (audited with their address).
    pub async fn export(&self, s: &SessionUser, client: &Client) -> IdentityResult<Value> {
        let document = self.export_account(s.user_id).await?;
        self.audit(Some(s.user_id), "data_exported", Severity::Info, client).await;
        Ok(document)
    }

    /// An export an operator made for the account (`layers admin user export`, a GDPR request
    /// that came by mail): the same document, audited as the operator's.
    pub async fn export_for_operator(&self, user: UserId) -> IdentityResult<Value> {
        let document = self.export_account(user).await?;
        self.audit.info(Some(user), "data_exported", json!({"by": "operator"})).await;
        Ok(document)
    }

    async fn export_account(&self, user: UserId) -> IdentityResult<Value> {
        let account = self.store.user(user).await?;
        let keys: Vec<Value> = self
            .store
            .keys_of_user(user)
            .await?
            .into_iter()
            .map(|k| {
                json!({
                    "id": k.id.to_string(), "name": k.name, "environment": k.env.as_str(),
                    "prefix": k.display_prefix, "last4": k.last4, "state": k.state.as_str(),
                    "spend_limit": k.spend_limit.map(|m| m.credits_text()), "spent": k.spent.credits_text(),
                    "created_at": ts(k.created_at), "last_used_at": k.last_used_at.map(ts),
                    "expires_at": k.expires_at.map(ts), "limit_period": k.limit_period.as_str(),
                    "rotated_at": k.rotated_at.map(ts),
                })
            })
            .collect();
        let alerts = self.store.alert_settings(user).await?.map(|a| {
            json!({
                "low_balance": a.low_balance.map(|m| m.credits_text()), "key_thresholds": a.key_thresholds,
                "webhook_url": a.webhook_url,
            })
        });
        let ledger: Vec<Value> = self
            .store
            .transactions(user, u32::MAX)
            .await?
            .into_iter()
            .map(|t| {
                json!({
                    "kind": t.kind.as_str(), "amount": t.amount.credits_text(),
                    "balance_after": t.balance_after.credits_text(), "reason": t.reason,
                    "request_id": t.request_id, "created_at": ts(t.created_at),
                })
            })
            .collect();
        let mut usage = Vec::new();
        let mut cursor = None;
        loop {
            let rows = self.store.recent_usage(user, PAGE, cursor).await?;
            let Some(last) = rows.last() else { break };
            cursor = Some(UsageCursor::after(last));
            let full = rows.len() == PAGE as usize;
            usage.extend(rows.into_iter().map(|u| {
                json!({
                    "request_id": u.request_id, "key_id": u.key_id.map(|k| k.to_string()), "model": u.model,
                    "provider": u.provider, "endpoint": u.endpoint,
                    "prompt_tokens": u.usage.prompt_tokens, "completion_tokens": u.usage.completion_tokens,
                    "cached_tokens": u.usage.cached_tokens, "reasoning_tokens": u.usage.reasoning_tokens,
                    "images": u.usage.images, "cost": u.cost.credits_text(), "charged": u.charged.credits_text(),
                    "latency_ms": u.latency_ms, "status": u.status, "streamed": u.streamed,
                    "created_at": ts(u.created_at),
                })
            }));
            if !full {
                break;
            }
        }
        let sessions: Vec<Value> = self
            .sessions(user)
            .await?
            .into_iter()
            .map(|s| {
                json!({
                    "ip_address": s.ip.map(|ip| ip.to_string()), "user_agent": s.user_agent,
                    "created_at": ts(s.created_at), "last_seen_at": ts(s.last_seen_at),
                })
            })
            .collect();
        let activity: Vec<Value> = self
            .store
            .audit_events(user, u32::MAX)
            .await?
            .into_iter()
            .map(|e| {
                json!({
                    "event": e.event_type, "severity": e.severity.as_str(),
                    "ip_address": e.ip_address.map(|ip| ip.to_string()), "user_agent": e.user_agent,
                    "details": e.metadata, "created_at": ts(e.created_at),
                })
            })
            .collect();
        let identities: Vec<Value> = self
            .store
            .identities_of(user)
            .await?
            .into_iter()
            .map(|(issuer, subject, at)| json!({"issuer": issuer, "subject": subject, "linked_at": ts(at)}))
            .collect();
        let two_factor = match self.two_factor_status(user).await? {
            super::two_factor::Status::On { recovery_codes_left } => {
                json!({"enabled": true, "recovery_codes_left": recovery_codes_left})
            }
            _ => json!({"enabled": false}),
        };
        Ok(json!({
            "exported_at": ts(self.now()),
            "account": account.map(|a| json!({
                "id": a.id.to_string(), "email": a.email, "tier": a.tier.to_string(), "status": a.status.as_str(),
                "created_at": ts(a.created_at),
            })),
            "balance": self.store.balance(user).await?.credits_text(),
            "api_keys": keys,
            "alerts": alerts,
            "ledger": ledger,
            "usage": usage,
            "sessions": sessions,
            "two_factor": two_factor,
            "sign_in_identities": identities,
            "audit_log": activity,
        }))
    }
}
