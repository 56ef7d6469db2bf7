//! Alerts a person asks for (SPEC §6.3, issue 14): a low balance, and each key's share of its
//! spend limit; plus reminders before a key expires. Each alert fires once per period (the
//! database's `alert_firings` row decides which node sends it), by e-mail and, when configured,
//! to a webhook signed like Stripe's. Every alert sent is in the audit log.

mod anomaly;
mod jobs;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use layers_domain::dashboard::alerts as rules;
use layers_domain::{KeyId, MicroCredits, UserId};
use layers_store::{AlertFiring, AlertSettings, KeyRecord, KeyState, Store};
use rand::TryRngCore;
use serde_json::json;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{ServiceError, ServiceResult};
use crate::identity::letters;
use crate::identity::mailer::Mailer;
use crate::identity::two_factor::SecretBox;
use crate::tasks::Tasks;

pub use anomaly::{AnomalySettings, AnomalyStats, OperatorHook};
pub use jobs::spawn;
pub use webhook::WebhookPolicy;

/// Alerts one account may be sent per hour from one node; past it the rest wait for the next
/// check (nothing is claimed, so nothing is lost), and one account cannot flood the mail queue
/// that carries everyone's confirmations and resets.
pub const ALERTS_PER_HOUR: u32 = 20;
/// Webhook deliveries in flight at once on a node; each runs off the alert job, so a slow
/// receiver delays only its own alerts.
const WEBHOOKS_AT_ONCE: usize = 16;

/// Where alerts go out: the webhook policy, and the public URL their links point to.
#[derive(Clone, Debug)]
pub struct AlertReach {
    pub webhooks: WebhookPolicy,
    pub public_url: String,
    pub anomaly: AnomalySettings,
}

/// What the alerts page shows and edits.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlertView {
    pub low_balance: Option<MicroCredits>,
    pub key_thresholds: Vec<u8>,
    pub webhook_url: Option<String>,
    /// The webhook's signing secret, shown to its owner so a receiver can verify.
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for AlertView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertView")
            .field("low_balance", &self.low_balance)
            .field("key_thresholds", &self.key_thresholds)
            .field("webhook", &self.webhook_url.is_some())
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// What a person submits.
#[derive(Clone, Default)]
pub struct AlertChange {
    pub low_balance: Option<MicroCredits>,
    pub key_thresholds: Vec<u8>,
    pub webhook_url: Option<String>,
    /// Make a new signing secret (the old one stops verifying at once).
    pub new_secret: bool,
}

/// One alert to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// `low_balance`, `key_limit` or `key_expiring`.
    pub kind: &'static str,
    pub subject: String,
    pub lines: Vec<String>,
    pub data: serde_json::Value,
}

#[derive(Debug)]
pub struct AlertService {
    store: Arc<dyn Store>,
    clock: Clock,
    mailer: Mailer,
    audit: Audit,
    secrets: SecretBox,
    webhooks: WebhookPolicy,
    public_url: String,
    tasks: Tasks,
    deliveries: Arc<Semaphore>,
    /// Alerts sent per account in the current hour (this node): (hour, count).
    budget: Mutex<HashMap<UserId, (i64, u32)>>,
    anomaly: AnomalySettings,
    anomaly_stats: AnomalyStats,
    /// When each account's usage was last examined for anomalies (this node).
    usage_checks: Mutex<HashMap<UserId, time::OffsetDateTime>>,
    /// Each account's spend in the week before the current hour, per hour (this node).
    baselines: Mutex<HashMap<UserId, (i64, MicroCredits)>>,
}

impl AlertService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        mailer: Mailer,
        audit: Audit,
        secrets: SecretBox,
        reach: AlertReach,
        tasks: Tasks,
    ) -> AlertService {
        AlertService {
            store,
            clock,
            mailer,
            audit,
            secrets,
            webhooks: reach.webhooks,
            public_url: reach.public_url,
            tasks,
            deliveries: Arc::new(Semaphore::new(WEBHOOKS_AT_ONCE)),
            budget: Mutex::new(HashMap::new()),
            anomaly: reach.anomaly,
            anomaly_stats: AnomalyStats::default(),
            usage_checks: Mutex::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one alert from the account's hourly budget; `false` when it is spent.
    fn within_budget(&self, user: UserId) -> bool {
        let hour = self.clock.now().unix_timestamp().div_euclid(3600);
        let mut budget = self.budget.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if budget.len() > 100_000 {
            budget.retain(|_, (h, _)| *h == hour);
        }
        let slot = budget.entry(user).or_insert((hour, 0));
        if slot.0 != hour {
            *slot = (hour, 0);
        }
        if slot.1 >= ALERTS_PER_HOUR {
            return false;
        }
        slot.1 += 1;
        true
    }

    pub async fn settings(&self, user: UserId) -> ServiceResult<AlertView> {
        let Some(s) = self.store.alert_settings(user).await? else { return Ok(AlertView::default()) };
        let secret = s.webhook_secret_enc.as_deref().and_then(|sealed| self.secrets.open_bytes(user, sealed));
        Ok(AlertView {
            low_balance: s.low_balance,
            key_thresholds: s.key_thresholds,
            webhook_url: s.webhook_url,
            webhook_secret: secret.and_then(|b| String::from_utf8(b).ok()),
        })
    }

    /// Saves the person's alerts; a webhook gets a signing secret when it has none.
    pub async fn change(&self, user: UserId, change: AlertChange) -> ServiceResult<AlertView> {
        if let Some(url) = &change.webhook_url {
            self.webhooks.check_url(url).map_err(ServiceError::Invalid)?;
        }
        if change.low_balance.is_some_and(|m| !m.is_positive()) {
            return Err(ServiceError::Invalid("the low-balance threshold must be more than zero"));
        }
        let old = self.store.alert_settings(user).await?.unwrap_or_default();
        // A new receiver gets a new secret: the old one must not be able to sign for it.
        let same_receiver = old.webhook_url.as_deref().and_then(webhook::origin)
            == change.webhook_url.as_deref().and_then(webhook::origin);
        let secret_enc = match (&change.webhook_url, old.webhook_secret_enc) {
            (None, _) => None,
            (Some(_), Some(old)) if !change.new_secret && same_receiver => Some(old),
            (Some(_), _) => {
                let mut bytes = [0u8; 24];
                rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| ServiceError::Entropy)?;
                let secret = format!("whsec_{}", layers_domain::hex::encode(&bytes));
                Some(self.secrets.seal(user, secret.as_bytes()).map_err(|_| ServiceError::Entropy)?)
            }
        };
        let settings = AlertSettings {
            low_balance: change.low_balance,
            key_thresholds: change.key_thresholds,
            webhook_url: change.webhook_url,
            webhook_secret_enc: secret_enc,
        };
        self.store.set_alert_settings(user, &settings, self.clock.now()).await?;
        self.audit
            .info(
                Some(user),
                "alerts_changed",
                json!({"low_balance_micros": settings.low_balance.map(|m| m.0),
                       "key_thresholds": settings.key_thresholds, "webhook": settings.webhook_url.is_some(),
                       "new_secret": change.new_secret}),
            )
            .await;
        self.settings(user).await
    }

    /// Checks the account's alerts now and sends those due; returns how many were sent.
    pub async fn check(&self, user: UserId) -> ServiceResult<usize> {
        let Some(settings) = self.store.alert_settings(user).await? else { return Ok(0) };
        let mut due = Vec::new();
        if let Some(threshold) = settings.low_balance {
            let balance = self.store.balance(user).await?;
            if rules::balance_is_low(balance, threshold) {
                // Once per top-up: the period is the time credit was last added.
                let period = self.store.last_credit_at(user).await?.map_or(0, |t| t.unix_timestamp_nanos() / 1_000_000);
                let firing = self.firing(user, "low_balance", String::new(), period.to_string(), threshold.0);
                let alert = Alert {
                    kind: "low_balance",
                    subject: format!("Your Layers balance is below {} credits", threshold.credits_text()),
                    lines: vec![
                        format!(
                            "Your balance is {} credits (US${}), below the {} credits you set for this alert.",
                            balance.credits_text(),
                            balance.usd_text(),
                            threshold.credits_text()
                        ),
                        "When it reaches zero, requests with your live keys are refused with 402. Add credits to keep them working.".to_owned(),
                    ],
                    data: json!({"balance": balance.credits_text(), "threshold": threshold.credits_text()}),
                };
                due.push((firing, alert));
            }
        }
        if !settings.key_thresholds.is_empty() {
            due.extend(self.key_alerts(user, &settings.key_thresholds).await?);
        }
        let mut sent = 0;
        for (firing, alert) in due {
            if !self.within_budget(user) {
                tracing::warn!(user_id = %user, "alert budget of the hour spent; the rest wait for a later check");
                break;
            }
            if self.store.claim_alert(&firing).await? {
                self.deliver(user, &settings, alert, firing).await;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Alerts for keys past a threshold of their limit in the limit's current period. Only
    /// the highest threshold reached is sent; the lower ones are claimed with it, silently.
    async fn key_alerts(&self, user: UserId, thresholds: &[u8]) -> ServiceResult<Vec<(AlertFiring, Alert)>> {
        let now = self.clock.now();
        let keys: Vec<KeyRecord> = self
            .store
            .keys_of_user(user)
            .await?
            .into_iter()
            .filter(|k| k.state == KeyState::Active && k.spend_limit.is_some())
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let spend = period_spend(self.store.as_ref(), user, &keys, now).await?;
        let mut due = Vec::new();
        for key in &keys {
            let Some(limit) = key.spend_limit else { continue };
            let spent = spend.get(&key.id).copied().unwrap_or_default();
            let reached = rules::reached(thresholds, spent, limit);
            let Some(top) = reached.last().copied() else { continue };
            let period = key.limit_period.start_day(now).map_or_else(|| "total".to_owned(), |d| d.to_string());
            for lower in reached.iter().filter(|t| **t != top) {
                let quiet = self.firing(user, "key_limit", key.id.to_string(), period.clone(), i64::from(*lower));
                self.store.claim_alert(&quiet).await?;
            }
            let label = key_label(&key.name, &key.display_prefix, &key.last4);
            let alert = Alert {
                kind: "key_limit",
                subject: format!("Your Layers API key {label} reached {top}% of its limit"),
                lines: vec![format!(
                    "The key {label} has spent {} of its {} credits {}: {top}% or more.{}",
                    spent.credits_text(),
                    limit.credits_text(),
                    key.limit_period.label(),
                    if top >= 100 {
                        " Requests with it are refused with 402 until the limit resets or is raised."
                    } else {
                        ""
                    }
                )],
                data: json!({"key_id": key.id, "threshold_percent": top, "spent": spent.credits_text(),
                             "limit": limit.credits_text(), "period": key.limit_period.as_str()}),
            };
            due.push((self.firing(user, "key_limit", key.id.to_string(), period, i64::from(top)), alert));
        }
        Ok(due)
    }

    fn firing(&self, user: UserId, kind: &'static str, subject: String, period: String, threshold: i64) -> AlertFiring {
        AlertFiring { user, kind, subject, period, threshold, at: self.clock.now() }
    }

    /// E-mail at once; the webhook in a task of its own (bounded per node), so a slow receiver
    /// holds up nothing else. Audited when the delivery is done.
    async fn deliver(&self, user: UserId, settings: &AlertSettings, alert: Alert, firing: AlertFiring) {
        if let Ok(Some(account)) = self.store.user(user).await {
            let lines: Vec<&str> = alert.lines.iter().map(String::as_str).collect();
            self.mailer.send(letters::alert(&account.email, &alert.subject, &lines, &self.link("/dashboard")));
        }
        let metadata = |webhook: &str| {
            json!({"kind": alert.kind, "subject": firing.subject, "threshold": firing.threshold,
                   "period": firing.period, "webhook": webhook})
        };
        let (Some(url), Some(sealed)) = (settings.webhook_url.clone(), settings.webhook_secret_enc.as_deref()) else {
            self.audit.info(Some(user), "alert_sent", metadata("none")).await;
            return;
        };
        let Some(secret) = self.secrets.open_bytes(user, sealed) else {
            self.audit.info(Some(user), "alert_sent", metadata("failed")).await;
            return;
        };
        let (policy, audit, now, deliveries) =
            (self.webhooks, self.audit.clone(), self.clock.now(), self.deliveries.clone());
        let cancel = self.tasks.cancelled();
        let pending = metadata("pending");
        self.tasks.spawn("alert-webhook", async move {
            let outcome = tokio::select! {
                outcome = async {
                    let _slot = deliveries.acquire_owned().await;
                    policy.post(&url, &secret, &alert, now).await
                } => outcome,
                () = cancel.cancelled() => Err("shutting down"),
            };
            let mut metadata = pending;
            metadata["webhook"] = json!(if outcome.is_ok() { "delivered" } else { "failed" });
            audit.info(Some(user), "alert_sent", metadata).await;
        });
    }

    /// Sends the reminders due for keys expiring within 7 days (7 days and 1 day before).
    pub async fn remind_expiring(&self) -> ServiceResult<usize> {
        let now = self.clock.now();
        let soon = self.store.keys_expiring(now, now + time::Duration::days(7)).await?;
        let mut sent = 0;
        for key in soon {
            let left = key.expires_at - now;
            let stage = if left <= time::Duration::days(1) { 1 } else { 7 };
            if key.reminded.is_some_and(|r| r <= stage)
                || !self.store.claim_expiry_reminder(key.user_id, key.id, stage).await?
            {
                continue;
            }
            let Ok(Some(account)) = self.store.user(key.user_id).await else { continue };
            let label = key_label(&key.name, &key.display_prefix, &key.last4);
            let expires = key
                .expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| key.expires_at.to_string());
            self.mailer.send(letters::key_expiring(
                &account.email,
                &label,
                &expires,
                stage,
                &self.link("/dashboard/keys"),
            ));
            self.audit.info(Some(key.user_id), "key_expiry_reminder", json!({"key_id": key.id, "days": stage})).await;
            sent += 1;
        }
        Ok(sent)
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.trim_end_matches('/'))
    }
}

/// A key as mails name it: `"name" (prefix...last4)` (ASCII, so subjects stay unencoded).
fn key_label(name: &str, prefix: &str, last4: &str) -> String {
    format!("\"{name}\" ({prefix}...{last4})")
}

/// What each key has spent in its limit's current period (lifetime for a total limit).
pub async fn period_spend(
    store: &dyn Store,
    user: UserId,
    keys: &[KeyRecord],
    now: time::OffsetDateTime,
) -> ServiceResult<HashMap<KeyId, MicroCredits>> {
    let first_day = keys.iter().filter_map(|k| k.limit_period.start_day(now)).min();
    let days = match first_day {
        Some(day) => store.key_spend_days(user, day).await?,
        None => Vec::new(),
    };
    Ok(keys
        .iter()
        .map(|k| {
            let spent = match k.limit_period.start_day(now) {
                None => k.spent,
                Some(from) => days.iter().filter(|(id, day, _)| *id == k.id && *day >= from).map(|(_, _, s)| *s).sum(),
            };
            (k.id, spent)
        })
        .collect())
}
