//! Reconciliation: the events Stripe could not deliver (our outage, a network partition, a
//! webhook answered 5xx) are listed from Stripe and processed like deliveries, so nothing is
//! lost however long we were away (Stripe keeps events 30 days and retries for 3). Processing
//! is idempotent by event id, so running it on every node, or twice, changes nothing twice.

use super::events::Processed;
use super::{wire, PaymentResult, PaymentService};

/// Events listed per page, and the most pages one run reads.
const PAGE: usize = 100;
const MAX_PAGES: usize = 50;

/// What one run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub listed: u64,
    pub applied: u64,
    pub already_applied: u64,
    pub ignored: u64,
    pub unreadable: u64,
    /// Events that could not be applied this time (the next run tries again).
    pub failed: u64,
}

impl PaymentService {
    /// Lists the undelivered events of the reconciliation window and processes each.
    pub async fn reconcile(&self) -> PaymentResult<ReconcileReport> {
        let since =
            self.clock.now().unix_timestamp() - i64::try_from(self.settings.reconcile_window.as_secs()).unwrap_or(0);
        let mut report = ReconcileReport::default();
        // Every page first (Stripe lists newest first), then the events oldest first: a payment
        // before its refund, a subscription's creation before its changes.
        let mut events: Vec<wire::Event> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("delivery_success", "false".to_owned()),
                ("created[gte]", since.to_string()),
                ("limit", PAGE.to_string()),
            ];
            if let Some(id) = &after {
                query.push(("starting_after", id.clone()));
            }
            let page: wire::List<wire::Event> = self.stripe.get("/v1/events", &query).await?;
            after = page.data.last().map(|e| e.id.clone());
            events.extend(page.data);
            if !page.has_more || after.is_none() {
                break;
            }
        }
        for event in events.iter().rev() {
            report.listed += 1;
            match self.process_event(event).await {
                Ok(Ok(Processed::Applied { duplicate: false, .. })) => report.applied += 1,
                Ok(Ok(Processed::Applied { duplicate: true, .. })) => report.already_applied += 1,
                Ok(Ok(Processed::Ignored(_))) => report.ignored += 1,
                Ok(Err(_)) => report.unreadable += 1,
                Err(err) => {
                    // One event that cannot be applied now does not hold back the others.
                    report.failed += 1;
                    tracing::warn!(event_id = %event.id, error = %crate::error::chain(&err), "could not reconcile a Stripe event");
                }
            }
        }
        if report.applied > 0 {
            tracing::info!(applied = report.applied, listed = report.listed, "reconciled Stripe events");
        }
        Ok(report)
    }
}
