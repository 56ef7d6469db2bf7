//! The payment job of each node: the reconciliation every `reconcile_every` (the first a minute
//! after start, so a fleet restarting does not list at once).

use std::sync::Arc;
use std::time::Duration;

use super::PaymentService;
use crate::tasks::Tasks;

const FIRST_AFTER: Duration = Duration::from_secs(60);

pub fn spawn(payments: Arc<PaymentService>, tasks: &Tasks) {
    let every = payments.settings.reconcile_every;
    tasks.spawn_every("stripe-reconcile", FIRST_AFTER, every, move || {
        let payments = payments.clone();
        async move {
            if let Err(err) = payments.reconcile().await {
                tracing::warn!(error = %crate::error::chain(&err), "Stripe reconciliation failed; the next run retries");
            }
        }
    });
}
