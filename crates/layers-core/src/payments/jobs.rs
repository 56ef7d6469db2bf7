//! The payment job of each node: the reconciliation every `reconcile_every` (the first a minute
//! after start, so a fleet restarting does not list at once).

use std::sync::Arc;
use std::time::Duration;

use super::PaymentService;
use crate::tasks::Tasks;

const FIRST_AFTER: Duration = Duration::from_secs(60);

pub fn spawn(payments: Arc<PaymentService>, tasks: &Tasks) {
    let cancel = tasks.cancelled();
    let every = payments.settings.reconcile_every;
    tasks.spawn("stripe-reconcile", async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_AFTER, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = payments.reconcile().await {
                tracing::warn!(error = %crate::error::chain(&err), "Stripe reconciliation failed; the next run retries");
            }
        }
    });
}
