//! What the dashboard shows: the overview, usage with its filters, charts and export, the
//! billing statement and the security events. Read-only: every change goes through the key,
//! alert and identity services. Figures come from the ledger and the usage rows; nothing here
//! is estimated except the runway, which says so.

mod export;

use std::collections::HashMap;
use std::sync::Arc;

use layers_domain::credit::TierCaps;
use layers_domain::dashboard::period::{day_of, day_start};
use layers_domain::dashboard::runway::{self, Runway};
use layers_domain::{KeyId, MicroCredits, Tier, UserId};
use layers_store::{
    AuditEvent, AuditFilter, KeyRecord, KeyState, StatementLine, Store, UsageCursor, UsageFilter, UsageRecord,
    UsageSummary, UsageTotals,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{ServiceError, ServiceResult};
use crate::ratelimit::RateSettings;

pub use export::MAX_EXPORT_ROWS;

/// Days the overview's chart shows.
pub const CHART_DAYS: i64 = 30;
/// Rows per usage page.
pub const PAGE_ROWS: u32 = 50;
/// Keys unused this long are listed by the hygiene view.
pub const STALE_AFTER_DAYS: i64 = 30;

/// The overview of one account.
#[derive(Clone, Debug)]
pub struct Overview {
    pub balance: MicroCredits,
    /// The sum of the account's ledger: always equal to the balance.
    pub ledger_sum: MicroCredits,
    /// Credit set aside on gateway nodes for this account's requests in flight (and for the
    /// next few); it goes back to the balance when idle.
    pub held: MicroCredits,
    pub tier: Tier,
    pub requests_per_minute: u32,
    pub per_request_cap: Option<MicroCredits>,
    pub per_hour_cap: Option<MicroCredits>,
    pub today: UsageTotals,
    pub this_month: UsageTotals,
    /// The last [`CHART_DAYS`] days, oldest first, every day present.
    pub days: Vec<(i64, UsageTotals)>,
    pub spent_last_7_days: MicroCredits,
    pub runway: Runway,
    pub live_keys: usize,
}

/// One page of usage, with the summary of every row the filter selects.
#[derive(Clone, Debug)]
pub struct UsagePage {
    pub rows: Vec<UsageRecord>,
    /// Where the next page starts, if there is one.
    pub next: Option<UsageCursor>,
    pub summary: UsageSummary,
    /// Every day of the chart's range (the filter's, or the last 30 days), oldest first.
    pub days: Vec<(i64, UsageTotals)>,
}

/// Why a key is listed by the hygiene view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hygiene {
    pub no_limit: Vec<KeyRecord>,
    pub no_expiry: Vec<KeyRecord>,
    pub unused: Vec<KeyRecord>,
}

/// CSV exports running at once on a node, at most.
pub const EXPORTS_AT_ONCE: usize = 4;

#[derive(Debug)]
pub struct DashboardService {
    store: Arc<dyn Store>,
    clock: Clock,
    rates: RateSettings,
    caps: TierCaps,
    exports: Arc<tokio::sync::Semaphore>,
}

impl DashboardService {
    pub fn new(store: Arc<dyn Store>, clock: Clock, rates: RateSettings, caps: TierCaps) -> DashboardService {
        DashboardService { store, clock, rates, caps, exports: Arc::new(tokio::sync::Semaphore::new(EXPORTS_AT_ONCE)) }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A tier's requests per minute per key, as configured.
    pub fn tier_rate(&self, tier: layers_domain::Tier) -> u32 {
        self.rates.for_tier(tier)
    }

    pub async fn overview(&self, user: UserId) -> ServiceResult<Overview> {
        let now = self.now();
        let account = self.store.user(user).await?.ok_or(crate::error::ServiceError::NotFound("account"))?;
        let state = self.store.credit_state(user).await?;
        let ledger_sum = self.store.ledger_sum(user).await?;
        let today = day_of(now);
        let from = day_start(today - CHART_DAYS + 1);
        let month_start = now.date().replace_day(1).map(|d| d.midnight().assume_utc()).unwrap_or(from);
        let filter = UsageFilter { from: Some(from.min(month_start)), ..UsageFilter::default() };
        let summary = self.store.usage_summary(user, &filter).await?;
        let days = fill_days(&summary.by_day, today - CHART_DAYS + 1, today);
        let sum_from = |first: i64| -> UsageTotals {
            summary.by_day.iter().filter(|(d, _)| *d >= first).fold(UsageTotals::default(), |acc, (_, t)| add(&acc, t))
        };
        let spent_last_7_days = sum_from(today - runway::WINDOW_DAYS + 1).charged;
        let keys = self.store.keys_of_user(user).await?;
        let caps = self.caps.for_tier(account.tier);
        Ok(Overview {
            balance: state.balance,
            ledger_sum,
            held: state.leased,
            tier: account.tier,
            requests_per_minute: account.rate.requests_per_minute.unwrap_or(self.rates.for_tier(account.tier)),
            per_request_cap: account.caps.per_request.or(caps.per_request),
            per_hour_cap: account.caps.per_hour.or(caps.per_hour),
            today: sum_from(today),
            this_month: sum_from(day_of(month_start)),
            days,
            spent_last_7_days,
            runway: runway::runway(state.balance, spent_last_7_days),
            live_keys: keys.iter().filter(|k| k.state == KeyState::Active).count(),
        })
    }

    /// One page of the filtered usage, newest first, and the filter's summary.
    pub async fn usage(
        &self,
        user: UserId,
        filter: &UsageFilter,
        before: Option<UsageCursor>,
    ) -> ServiceResult<UsagePage> {
        let mut rows = self.store.usage_page(user, filter, PAGE_ROWS + 1, before).await?;
        let next = if rows.len() > PAGE_ROWS as usize {
            rows.truncate(PAGE_ROWS as usize);
            rows.last().map(UsageCursor::after)
        } else {
            None
        };
        let summary = self.store.usage_summary(user, filter).await?;
        let today = day_of(self.now());
        let last = filter.until.map_or(today, |u| day_of(u - time::Duration::milliseconds(1)));
        let first = filter.from.map_or(last - CHART_DAYS + 1, day_of).max(last - 366);
        let days = fill_days(&summary.by_day, first, last);
        Ok(UsagePage { rows, next, summary, days })
    }

    /// The filter's rows summed by day, model, key and provider (no page of rows).
    pub async fn usage_summary(&self, user: UserId, filter: &UsageFilter) -> ServiceResult<UsageSummary> {
        Ok(self.store.usage_summary(user, filter).await?)
    }

    pub async fn usage_row(&self, user: UserId, id: Uuid) -> ServiceResult<Option<UsageRecord>> {
        Ok(self.store.usage_row(user, id).await?)
    }

    /// The statement, newest first, each line with the balance the ledger recorded after it.
    pub async fn statement(&self, user: UserId, limit: u32) -> ServiceResult<Vec<StatementLine>> {
        Ok(self.store.statement(user, limit).await?)
    }

    pub async fn security_events(
        &self,
        user: UserId,
        filter: &AuditFilter,
        limit: u32,
    ) -> ServiceResult<Vec<AuditEvent>> {
        Ok(self.store.audit_events_filtered(user, filter, limit).await?)
    }

    /// What each key spent in its limit's current period.
    pub async fn key_spend(&self, user: UserId, keys: &[KeyRecord]) -> ServiceResult<HashMap<KeyId, MicroCredits>> {
        crate::alerts::period_spend(self.store.as_ref(), user, keys, self.now()).await
    }

    /// Live keys that deserve a look: no spend limit, no expiry, or unused for 30 days.
    pub fn hygiene(&self, keys: &[KeyRecord]) -> Hygiene {
        let now = self.now();
        let live: Vec<&KeyRecord> = keys.iter().filter(|k| k.state == KeyState::Active).collect();
        let stale = |k: &KeyRecord| {
            let last = k.last_used_at.unwrap_or(k.created_at);
            now - last >= time::Duration::days(STALE_AFTER_DAYS)
        };
        Hygiene {
            no_limit: live.iter().filter(|k| k.spend_limit.is_none()).map(|k| (*k).clone()).collect(),
            no_expiry: live.iter().filter(|k| k.expires_at.is_none()).map(|k| (*k).clone()).collect(),
            unused: live.iter().filter(|k| stale(k)).map(|k| (*k).clone()).collect(),
        }
    }

    /// Every row the filter selects as CSV (at most [`MAX_EXPORT_ROWS`]), streamed; at most
    /// [`EXPORTS_AT_ONCE`] exports run at once on a node.
    pub async fn usage_csv(
        &self,
        user: UserId,
        filter: &UsageFilter,
    ) -> ServiceResult<impl futures_util::Stream<Item = ServiceResult<String>> + Send + 'static> {
        let permit = self
            .exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Busy("other exports are running: try again in a minute"))?;
        let names: HashMap<KeyId, String> =
            self.store.keys_of_user(user).await?.into_iter().map(|k| (k.id, k.name)).collect();
        export::csv(self.store.clone(), user, filter.clone(), names, permit).await
    }
}

fn add(a: &UsageTotals, b: &UsageTotals) -> UsageTotals {
    UsageTotals {
        requests: a.requests + b.requests,
        prompt_tokens: a.prompt_tokens + b.prompt_tokens,
        completion_tokens: a.completion_tokens + b.completion_tokens,
        charged: a.charged.saturating_add(b.charged),
    }
}

/// Every day from `first` to `last`, with the summary's totals or zero.
fn fill_days(by_day: &[(i64, UsageTotals)], first: i64, last: i64) -> Vec<(i64, UsageTotals)> {
    let known: HashMap<i64, &UsageTotals> = by_day.iter().map(|(d, t)| (*d, t)).collect();
    (first..=last).map(|d| (d, known.get(&d).map(|t| (*t).clone()).unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_days_are_zero_and_the_range_is_whole() {
        let t = UsageTotals { requests: 2, prompt_tokens: 0, completion_tokens: 0, charged: MicroCredits(5) };
        let days = fill_days(&[(10, t.clone())], 8, 11);
        assert_eq!(days.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![8, 9, 10, 11]);
        assert_eq!(days[2].1, t);
        assert_eq!(days[0].1, UsageTotals::default());
    }
}
