//! Admitting a request: its upper-bound cost within the per-request cap (lowering the output cap
//! when allowed), then a hold on this node's lease of the key, refilled from the database when
//! short and, when only other leases of the account stand in the way, after they gave their
//! free credit back. Invariant: a request is refused (402/429) only when the account's balance
//! less what requests in flight hold, or a cap, cannot cover it — never because credit sits idle
//! in another key's or node's lease.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use layers_domain::credit::{self, EffectiveCaps, GrantDecision};
use layers_domain::{MicroCredits, Price};
use layers_store::CapOverrides;
use tokio::time::Instant;

use super::books::KeyAccount;
use super::gate::Unavailable;
use super::refill;
use super::reservation::Reservation;
use super::{BillingError, Inner, LowerMaxTokens};
use crate::auth::Principal;

/// Fewest output tokens worth lowering `max_tokens` to; below this a request is refused.
const MIN_OUTPUT_TOKENS: u32 = 16;
/// Output cap assumed for a model whose catalogue entry has none.
const FALLBACK_OUTPUT_TOKENS: u32 = 4096;
/// Refills one reservation may make when others keep taking the credit it leased.
const REFILL_ATTEMPTS: usize = 4;

/// What to reserve for one request.
#[derive(Debug)]
pub struct ReserveRequest<'a> {
    pub principal: &'a Principal,
    pub price: &'a Price,
    /// Upper bound of prompt tokens.
    pub prompt_tokens: u32,
    /// `max_tokens` as the client sent it (per choice).
    pub requested_output: Option<u32>,
    /// Choices asked for (`n`): each may produce the full output.
    pub choices: u32,
    /// The model's output cap (0 when unknown).
    pub model_output_cap: u32,
    /// Images asked for, priced per image on top of the tokens.
    pub images: u32,
    /// Fees the provider bills per request on top of tokens (search).
    pub fees: MicroCredits,
}

/// A hold, and the output cap it covers.
#[derive(Debug)]
pub struct Reserved {
    pub reservation: Reservation,
    /// Output tokens covered, per choice.
    pub max_output: u32,
    /// Set when the gateway lowered the output cap to what is covered: forward it upstream.
    pub lowered_to: Option<u32>,
}

/// The estimate of a request and how to shrink it.
struct Plan<'a> {
    price: &'a Price,
    prompt_tokens: u32,
    choices: u32,
    /// Images and fees: what does not depend on the output cap.
    fixed: MicroCredits,
    output: u32,
    lowered: bool,
    may_lower: bool,
}

impl Plan<'_> {
    fn cost_of(&self, per_choice: u32) -> MicroCredits {
        let tokens = credit::estimate(self.price, self.prompt_tokens, per_choice.saturating_mul(self.choices));
        tokens.saturating_add(self.fixed)
    }

    fn estimate(&self) -> MicroCredits {
        self.cost_of(self.output)
    }

    /// The most output per choice `budget` covers, if any.
    fn fit(&self, budget: MicroCredits) -> Option<u32> {
        let left = budget.saturating_sub(self.fixed);
        credit::affordable_output(self.price, self.prompt_tokens, left, self.output.saturating_mul(self.choices))
            .map(|total| total / self.choices)
    }
}

/// An unusually expensive request (refused by the per-request cap) goes to the account's audit
/// trail: the first of each minute per account on this node, off the request path.
fn note_expensive(
    inner: &Arc<Inner>,
    user: layers_domain::UserId,
    key: layers_domain::KeyId,
    estimate: MicroCredits,
    cap: MicroCredits,
) {
    let minute = inner.clock.now().unix_timestamp().div_euclid(60);
    {
        let mut noted = inner.expensive_noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if noted.len() > 100_000 {
            noted.retain(|_, m| *m == minute);
        }
        if noted.insert(user, minute) == Some(minute) {
            return;
        }
    }
    let audit = inner.audit.clone();
    inner.tasks.spawn("audit-expensive-request", async move {
        let metadata = serde_json::json!({"key_id": key.to_string(), "estimate": estimate.credits_text(), "cap": cap.credits_text()});
        audit.record(Some(user), "expensive_request_refused", metadata, layers_store::Severity::Warning, None).await;
    });
}

pub(super) async fn reserve(inner: &Arc<Inner>, r: ReserveRequest<'_>) -> Result<Reserved, BillingError> {
    let p = r.principal;
    let mut caps = EffectiveCaps::resolve(
        inner.settings.tier_caps.for_tier(p.tier),
        overrides(p.account_caps),
        overrides(p.key_caps),
        p.spend_limit,
    );
    caps.key_total_from_day = p.limit_period.start_day(inner.clock.now());
    let mut plan = plan(inner, &r);
    if let Some(cap) = caps.per_request.filter(|cap| plan.estimate() > *cap) {
        match plan.fit(cap) {
            Some(n) if plan.may_lower && n >= MIN_OUTPUT_TOKENS => {
                plan.output = n;
                plan.lowered = true;
            }
            _ => {
                note_expensive(inner, p.user_id, p.key_id, plan.estimate(), cap);
                return Err(BillingError::TooExpensive { estimate: plan.estimate(), cap });
            }
        }
    }
    let per_request_cap = caps.per_request;
    let account = inner.registry.account(p.user_id, p.key_id);
    let hold = |amount: MicroCredits| refill::try_hold(inner, &account, amount, per_request_cap);
    let estimate = plan.estimate();
    wait_for_backlog(inner).await?;
    if let Some(res) = hold(estimate) {
        return Ok(reserved(res, &plan));
    }
    let _refilling = account.refill.lock().await;
    if let Some(res) = hold(estimate) {
        return Ok(reserved(res, &plan));
    }
    let grant = lease_for(inner, &account, estimate, &caps).await?;
    if let Some(res) = hold(estimate) {
        return Ok(reserved(res, &plan));
    }
    // Not enough for the full output: lower it to what is covered, if allowed.
    let free = MicroCredits(account.lock().book.free().max(0));
    let budget = free.saturating_add(grant.room());
    if plan.may_lower {
        if let Some(n) = plan.fit(budget).filter(|n| *n >= MIN_OUTPUT_TOKENS) {
            plan.output = n;
            plan.lowered = true;
            let smaller = plan.estimate();
            if account.lock().book.free() < smaller.0 {
                refill::refill(inner, &account, smaller, &caps).await?;
            }
            if let Some(res) = hold(smaller) {
                return Ok(reserved(res, &plan));
            }
        }
    }
    Err(refusal(&grant, &caps, estimate, budget))
}

fn plan<'a>(inner: &Inner, r: &ReserveRequest<'a>) -> Plan<'a> {
    let explicit = r.requested_output.is_some();
    let may_lower = match inner.settings.lower_max_tokens {
        LowerMaxTokens::Never => false,
        LowerMaxTokens::Implicit => !explicit,
        LowerMaxTokens::Always => true,
    };
    let model_cap = if r.model_output_cap > 0 { r.model_output_cap } else { FALLBACK_OUTPUT_TOKENS };
    let images = r.price.cost(&layers_domain::Usage { images: r.images, ..Default::default() });
    Plan {
        price: r.price,
        prompt_tokens: r.prompt_tokens,
        choices: r.choices.max(1),
        fixed: images.saturating_add(r.fees),
        output: r.requested_output.unwrap_or(model_cap),
        // Without a known output cap the gateway forwards one, so the hold is an upper bound.
        lowered: r.model_output_cap == 0 && !explicit,
        may_lower,
    }
}

fn reserved(reservation: Reservation, plan: &Plan<'_>) -> Reserved {
    Reserved { reservation, max_output: plan.output, lowered_to: plan.lowered.then_some(plan.output) }
}

fn overrides(c: CapOverrides) -> credit::Caps {
    credit::Caps { per_request: c.per_request, per_hour: c.per_hour }
}

/// Refills until the lease covers `need`, or the database says it cannot: when only the
/// account's other leases stand in the way, asks them for their free credit and waits (at most
/// `reclaim_wait`) until they answered. Returns the last grant (for the refusal's reason).
async fn lease_for(
    inner: &Arc<Inner>,
    account: &Arc<KeyAccount>,
    need: MicroCredits,
    caps: &EffectiveCaps,
) -> Result<GrantDecision, BillingError> {
    let mut grant = refill::refill(inner, account, need, caps).await?;
    let mut attempts = 0;
    let mut reclaim: Option<(i64, Instant)> = None;
    let mut pause = Duration::from_millis(2);
    loop {
        if account.lock().book.free() >= need.0 {
            return Ok(grant);
        }
        if grant.room() >= need && attempts < REFILL_ATTEMPTS {
            // Requests that did not wait for this refill took its credit: lease again.
            attempts += 1;
        } else if grant.stranded(need) {
            match reclaim {
                None => {
                    // Ask the other leases, then look again at once: this node's answer is in.
                    inner.stats.reclaims.fetch_add(1, Ordering::Relaxed);
                    let epoch = refill::request_reclaim(inner, account).await?;
                    reclaim = Some((epoch, Instant::now() + inner.settings.reclaim_wait));
                }
                Some((epoch, deadline)) => {
                    // Every other lease answered and still not enough: what they hold is in use.
                    let answered = grant.others_unanswered.0 == 0
                        && account.credit.reclaim_answered.load(Ordering::Relaxed) >= epoch;
                    if answered || Instant::now() >= deadline {
                        return Ok(grant);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        } else {
            return Ok(grant);
        }
        grant = refill::refill(inner, account, need, caps).await?;
    }
}

/// Waits while more settlements wait to be written than the writer should have outstanding, so
/// that a writer falling behind slows admission instead of growing the money at risk.
pub(super) async fn wait_for_backlog(inner: &Inner) -> Result<(), BillingError> {
    if inner.sink.backlog() <= inner.settings.max_backlog {
        return Ok(());
    }
    inner.stats.backpressure_waits.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + inner.settings.backlog_wait;
    loop {
        // Registered before the check, so a batch that ends in between still wakes us.
        let written = inner.sink.written_notice();
        tokio::pin!(written);
        written.as_mut().enable();
        if inner.sink.backlog() <= inner.settings.max_backlog {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, written).await.is_err() {
            return if inner.sink.backlog() <= inner.settings.max_backlog {
                Ok(())
            } else {
                Err(BillingError::Unavailable(Unavailable::Backlog))
            };
        }
    }
}

/// Which limit refused the request.
fn refusal(g: &GrantDecision, caps: &EffectiveCaps, needed: MicroCredits, available: MicroCredits) -> BillingError {
    let short = |room: Option<MicroCredits>| room.is_some_and(|r| r < needed && r <= g.available);
    if short(g.key_total_room) {
        if let Some(limit) = caps.key_total {
            return BillingError::KeyLimit { limit };
        }
    }
    if short(g.key_hour_room) {
        if let Some(cap) = caps.key_per_hour {
            return BillingError::HourlyLimit { cap, key: true };
        }
    }
    if short(g.account_hour_room) {
        if let Some(cap) = caps.account_per_hour {
            return BillingError::HourlyLimit { cap, key: false };
        }
    }
    BillingError::Insufficient { needed, available }
}
