//! The alert job of each node: accounts charged since the last round are checked every few
//! seconds (alerts, then auto top-up); key expiry reminders every ten minutes. Which node sends an alert is decided by
//! the database (`claim_alert`), so nodes never send one twice.

use std::sync::Arc;
use std::time::Duration;

use super::AlertService;
use crate::billing::Billing;
use crate::payments::PaymentService;
use crate::tasks::Tasks;

/// How often charged accounts are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often the expiry reminders run.
pub const REMIND_EVERY: Duration = Duration::from_secs(600);
/// How often anomaly holds whose time is up are released.
pub const RELEASE_HOLDS_EVERY: Duration = Duration::from_secs(15);
/// When the first reminders run after start.
pub const FIRST_REMINDERS_AFTER: Duration = Duration::from_secs(60);

pub fn spawn(alerts: Arc<AlertService>, payments: Option<Arc<PaymentService>>, billing: Billing, tasks: &Tasks) {
    let cancel = tasks.cancelled();
    let tasks_for_checks = tasks.clone();
    tasks.spawn("alerts", async move {
        let tasks = tasks_for_checks;
        let mut check = tokio::time::interval(CHECK_EVERY);
        // The first reminders a minute after start: a node (re)starting, or a fleet rolling
        // over, does not query the database for them at once.
        let start = tokio::time::Instant::now() + FIRST_REMINDERS_AFTER;
        let mut remind = tokio::time::interval_at(start, REMIND_EVERY);
        let mut release = tokio::time::interval(RELEASE_HOLDS_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = check.tick() => {
                    for user in billing.take_charged() {
                        if let Err(err) = alerts.check(user).await {
                            tracing::warn!(error = %crate::error::chain(&err), user_id = %user, "alert check failed");
                        }
                        if let Err(err) = alerts.check_usage_anomalies(user).await {
                            tracing::warn!(error = %crate::error::chain(&err), user_id = %user, "anomaly check failed");
                        }
                        if let Some(payments) = &payments {
                            payments.check_auto_topup_soon(user, &tasks);
                        }
                    }
                }
                _ = release.tick() => {
                    if let Err(err) = alerts.release_holds().await {
                        tracing::warn!(error = %crate::error::chain(&err), "could not release anomaly holds");
                    }
                }
                _ = remind.tick() => {
                    if let Err(err) = alerts.remind_expiring().await {
                        tracing::warn!(error = %crate::error::chain(&err), "expiry reminders failed");
                    }
                }
            }
        }
    });
}
