//! The anomaly rules (SPEC §8.4, the security guide's table) on every node: rapid key creation
//! flags the account; a usage spike alerts and holds the account to a lower rate limit for a
//! while; spend on high-cost models over the daily threshold alerts the user and the operator.
//! Each fires at most once per period whatever the number of nodes (the `alert_firings` row
//! decides), and goes to the audit log, a metric, and the operator's signed webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use layers_domain::anomaly::{self as rules, Thresholds};
use layers_domain::dashboard::period::day_start;
use layers_domain::{MicroCredits, UserId};
use layers_store::Severity;
use serde_json::json;

use super::{Alert, AlertService};
use crate::error::ServiceResult;
use crate::identity::letters;

/// Where the operator hears of anomalies: a webhook signed like the alert webhooks.
#[derive(Clone)]
pub struct OperatorHook {
    pub url: String,
    pub secret: secrecy::SecretString,
}

impl std::fmt::Debug for OperatorHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorHook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The rules' thresholds and the operator's webhook.
#[derive(Clone, Debug, Default)]
pub struct AnomalySettings {
    pub thresholds: Thresholds,
    pub operator: Option<OperatorHook>,
}

/// Anomalies raised on this node, by rule (the `layers_anomalies_total` metric).
#[derive(Debug, Default)]
pub struct AnomalyStats {
    pub rapid_key_creation: AtomicU64,
    pub usage_spike: AtomicU64,
    pub expensive_models: AtomicU64,
    pub repeated_refunds: AtomicU64,
}

/// How often one account's usage is examined on one node at most.
const USAGE_CHECK_EVERY: Duration = Duration::from_secs(30);

impl AlertService {
    pub fn anomaly_stats(&self) -> &AnomalyStats {
        &self.anomaly_stats
    }

    /// After a key was created: the account's keys created within the hour.
    pub async fn key_created(&self, user: UserId) -> ServiceResult<()> {
        let t = &self.anomaly.thresholds;
        let now = self.clock.now();
        let hour_ago = now - time::Duration::hours(1);
        let created = self.store.keys_of_user(user).await?.iter().filter(|k| k.created_at > hour_ago).count();
        let created = u32::try_from(created).unwrap_or(u32::MAX);
        if !rules::rapid_key_creation(created, t) {
            return Ok(());
        }
        // Once per hour of the clock: a burst across the hour's edge flags twice at most.
        let period = now.unix_timestamp().div_euclid(3600).to_string();
        let data = json!({"keys_created_in_an_hour": created, "threshold": t.keys_per_hour});
        self.raise(user, "rapid_key_creation", period, Severity::Warning, data, None).await
    }

    /// After the account was charged: a spike against its normal hourly usage, and the day's
    /// spend on high-cost models (each account at most every 30 s on a node).
    pub async fn check_usage_anomalies(&self, user: UserId) -> ServiceResult<()> {
        if !self.usage_check_due(user) {
            return Ok(());
        }
        let t = self.anomaly.thresholds.clone();
        let now = self.clock.now();
        let hour_ago = now - time::Duration::hours(1);
        let day = layers_domain::dashboard::period::day_of(now);
        let end = now + time::Duration::seconds(1);
        if t.spike_factor > 0 {
            let last_hour = self.spent(user, hour_ago, end).await?;
            if last_hour >= t.spike_min && last_hour.0 > 0 {
                let baseline = self.baseline(user, hour_ago).await?;
                if rules::spike(last_hour, baseline, &t) {
                    self.usage_spike(user, last_hour, baseline, &t).await?;
                }
            }
        }
        if t.expensive_per_day.0 > 0 {
            let today_spend = self.store.spend_by_model(user, day_start(day), end).await?;
            let expensive: Vec<(&String, MicroCredits)> = today_spend
                .iter()
                .filter(|(m, _)| rules::is_expensive(m, &t.expensive_models))
                .map(|(m, c)| (m, *c))
                .collect();
            let spent = total(expensive.iter().map(|(_, c)| *c));
            if rules::expensive_day(spent, &t) {
                let models: Vec<&String> = expensive.iter().map(|(m, _)| *m).collect();
                let data = json!({"spent_today": spent.credits_text(), "threshold": t.expensive_per_day.credits_text(),
                                  "models": models});
                let tell = Alert {
                    kind: "expensive_models",
                    subject: format!("You spent {} credits on high-cost models today", spent.credits_text()),
                    lines: vec![format!(
                        "Today (UTC) your requests to high-cost models ({}) were charged {} credits (US${}), past the {} credits at which we alert you.",
                        models.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                        spent.credits_text(),
                        spent.usd_text(),
                        t.expensive_per_day.credits_text(),
                    ), "If this is not you, lock your account down from the Security page and rotate your keys.".to_owned()],
                    data: data.clone(),
                };
                self.raise(user, "expensive_models", day.to_string(), Severity::Warning, data, Some(tell)).await?;
            }
        }
        Ok(())
    }

    /// The account's spend in the week before `hour_ago`, read once per account and hour.
    async fn baseline(&self, user: UserId, hour_ago: time::OffsetDateTime) -> ServiceResult<MicroCredits> {
        let hour = hour_ago.unix_timestamp().div_euclid(3600);
        if let Some((h, v)) = self.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&user) {
            if *h == hour {
                return Ok(*v);
            }
        }
        let week_before = hour_ago - time::Duration::hours(rules::BASELINE_HOURS);
        let value = self.spent(user, week_before, hour_ago).await?;
        let mut cache = self.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.retain(|_, (h, _)| *h == hour);
        }
        cache.insert(user, (hour, value));
        Ok(value)
    }

    async fn usage_spike(
        &self,
        user: UserId,
        last_hour: MicroCredits,
        baseline: MicroCredits,
        t: &Thresholds,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        let period = now.unix_timestamp().div_euclid(3600).to_string();
        let firing = self.firing(user, "usage_spike", String::new(), period.clone(), 0);
        if !self.store.claim_alert(&firing).await? {
            return Ok(());
        }
        let until = now + time::Duration::minutes(i64::from(t.spike_hold_minutes));
        let held = self.store.hold_account(user, t.spike_requests_per_minute, until, now).await?;
        let data = json!({
            "last_hour": last_hour.credits_text(),
            "normal_hour": MicroCredits(baseline.0 / rules::BASELINE_HOURS).credits_text(),
            "factor": t.spike_factor,
            "held_to_requests_per_minute": held.then_some(t.spike_requests_per_minute),
            "held_until": held.then(|| until.unix_timestamp()),
        });
        self.announce(user, "usage_spike", period, Severity::Critical, data, None).await;
        Ok(())
    }

    /// Repeated refunds or disputes flagged the account for review (the payments' rule): the
    /// metric and the operator's webhook, like the other rules (the audit event is the
    /// payments').
    pub async fn refunds_flagged(&self, user: UserId, refunds_in_window: Option<i64>) {
        self.anomaly_stats.repeated_refunds.fetch_add(1, Ordering::Relaxed);
        let data = json!({"refunds_in_30_days": refunds_in_window});
        self.tell_operator(user, "repeated_refunds", String::new(), Severity::Critical, data);
    }

    /// Ends the spike holds whose time is up (on any node; each once).
    pub async fn release_holds(&self) -> ServiceResult<usize> {
        let released = self.store.release_anomaly_holds(self.clock.now()).await?;
        for user in &released {
            self.audit.info(Some(*user), "anomaly_hold_released", json!({})).await;
        }
        Ok(released.len())
    }

    async fn spent(
        &self,
        user: UserId,
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> ServiceResult<MicroCredits> {
        Ok(total(self.store.spend_by_model(user, from, until).await?.into_iter().map(|(_, c)| c)))
    }

    fn usage_check_due(&self, user: UserId) -> bool {
        let now = self.clock.now();
        let every = time::Duration::try_from(USAGE_CHECK_EVERY).unwrap_or(time::Duration::ZERO);
        let mut last = self.usage_checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.len() > 100_000 {
            last.retain(|_, at| now - *at < every);
        }
        match last.get(&user) {
            Some(at) if now - *at < every => false,
            _ => {
                last.insert(user, now);
                true
            }
        }
    }

    /// Claims the rule's firing for the period and, for the one node that wins, announces it.
    async fn raise(
        &self,
        user: UserId,
        rule: &'static str,
        period: String,
        severity: Severity,
        data: serde_json::Value,
        tell_user: Option<Alert>,
    ) -> ServiceResult<()> {
        let firing = self.firing(user, rule, String::new(), period.clone(), 0);
        if self.store.claim_alert(&firing).await? {
            self.announce(user, rule, period, severity, data, tell_user).await;
        }
        Ok(())
    }

    /// The audit log, the metric, the operator's webhook, and the user's e-mail when asked.
    async fn announce(
        &self,
        user: UserId,
        rule: &'static str,
        period: String,
        severity: Severity,
        data: serde_json::Value,
        tell_user: Option<Alert>,
    ) {
        let counter = match rule {
            "repeated_refunds" => &self.anomaly_stats.repeated_refunds,
            "rapid_key_creation" => &self.anomaly_stats.rapid_key_creation,
            "usage_spike" => &self.anomaly_stats.usage_spike,
            _ => &self.anomaly_stats.expensive_models,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.audit.record(Some(user), &format!("anomaly_{rule}"), data.clone(), severity, None).await;
        tracing::warn!(user_id = %user, rule, "anomaly");
        if let Some(alert) = tell_user {
            if let Ok(Some(account)) = self.store.user(user).await {
                let lines: Vec<&str> = alert.lines.iter().map(String::as_str).collect();
                self.mailer.send(letters::alert(
                    &account.email,
                    &alert.subject,
                    &lines,
                    &self.link("/dashboard/usage"),
                ));
            }
        }
        self.tell_operator(user, rule, period, severity, data);
    }

    /// POSTs the anomaly to the operator's webhook, signed, off the caller's path.
    fn tell_operator(
        &self,
        user: UserId,
        rule: &'static str,
        period: String,
        severity: Severity,
        data: serde_json::Value,
    ) {
        let Some(hook) = self.anomaly.operator.clone() else { return };
        let alert = Alert {
            kind: "anomaly",
            subject: format!("Anomaly: {rule}"),
            lines: Vec::new(),
            data: json!({"rule": rule, "user_id": user, "period": period, "severity": severity.as_str(), "details": data}),
        };
        let (policy, now) = (self.webhooks, self.clock.now());
        let cancel = self.tasks.cancelled();
        self.tasks.spawn("anomaly-webhook", async move {
            let secret = secrecy::ExposeSecret::expose_secret(&hook.secret).as_bytes().to_vec();
            tokio::select! {
                outcome = policy.post(&hook.url, &secret, &alert, now) => {
                    if let Err(why) = outcome {
                        tracing::warn!(rule, reason = why, "the operator's anomaly webhook failed");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

fn total(amounts: impl Iterator<Item = MicroCredits>) -> MicroCredits {
    MicroCredits(amounts.map(|c| c.0).sum())
}
