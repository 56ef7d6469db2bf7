//! Credits on the hot path (SPEC §4.2): estimate → hold → settle, against credit this node
//! leased from the database. Invariant: a hold only exists inside a lease the database granted
//! out of the balance (minus every node's leases, within the caps), so no concurrency and no
//! number of nodes can overspend; a database round trip happens only to refill a lease.

mod accounts;
mod settler;
mod upkeep;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::credit::{self, EffectiveCaps, TierCaps};
use layers_domain::{MicroCredits, Price};
use layers_store::{CapOverrides, LeaseGrant, LeaseRequest, Settlement, Store, StoreError, UsageRecord};
use tokio::time::Instant;
use uuid::Uuid;

use self::accounts::{KeyAccount, Registry};
use self::settler::Outcome;
pub use self::settler::SettleSink;
use crate::auth::Principal;
use crate::tasks::Tasks;

/// Fewest output tokens worth lowering `max_tokens` to; below this a request is refused.
const MIN_OUTPUT_TOKENS: u32 = 16;
/// Output cap assumed for a model whose catalogue entry has none.
const FALLBACK_OUTPUT_TOKENS: u32 = 4096;

/// When the gateway may lower the `max_tokens` it forwards to what is covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerMaxTokens {
    Never,
    /// Only when the client did not set `max_tokens` (the default).
    Implicit,
    Always,
}

#[derive(Clone, Debug)]
pub struct BillingSettings {
    pub tier_caps: TierCaps,
    /// How long a lease lives without renewal (a dead node's credit returns after this).
    pub lease_ttl: Duration,
    /// Unused lease credit goes back to the database after this long without holds.
    pub idle_release: Duration,
    /// How often every node runs the reaper of expired leases.
    pub reaper_interval: Duration,
    pub lower_max_tokens: LowerMaxTokens,
    /// Largest block of credit leased at once.
    pub max_block: MicroCredits,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            tier_caps: TierCaps::default(),
            lease_ttl: Duration::from_secs(30),
            idle_release: Duration::from_secs(2),
            reaper_interval: Duration::from_secs(10),
            lower_max_tokens: LowerMaxTokens::Implicit,
            max_block: MicroCredits::from_credits(100).unwrap_or(MicroCredits(100_000_000)),
        }
    }
}

/// Why a request cannot be paid for.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("this request may cost up to {estimate} credits, more than the limit of {cap} credits per request")]
    TooExpensive { estimate: MicroCredits, cap: MicroCredits },
    #[error("insufficient credits: this request needs up to {needed} credits and {available} are available")]
    Insufficient { needed: MicroCredits, available: MicroCredits },
    #[error("spend limit of {cap} credits per hour reached{}", if *.key { " for this API key" } else { "" })]
    HourlyLimit { cap: MicroCredits, key: bool },
    #[error("this API key reached its spend limit of {limit} credits")]
    KeyLimit { limit: MicroCredits },
    #[error("billing is unavailable")]
    Unavailable(#[source] StoreError),
}

/// What to reserve for one request.
#[derive(Debug)]
pub struct ReserveRequest<'a> {
    pub principal: &'a Principal,
    pub price: &'a Price,
    /// Upper-bound estimate of prompt tokens.
    pub prompt_tokens: u32,
    /// `max_tokens` as the client sent it (per choice).
    pub requested_output: Option<u32>,
    /// Choices asked for (`n`): each may produce the full output.
    pub choices: u32,
    /// The model's output cap (0 when unknown).
    pub model_output_cap: u32,
    /// Images asked for, priced per image on top of the tokens.
    pub images: u32,
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

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct BillingStats {
    pub refills: AtomicU64,
    pub shortfalls: AtomicU64,
    pub shortfall_micros: AtomicU64,
    pub refused_settlements: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct Billing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    tasks: Tasks,
    node: Uuid,
    settings: BillingSettings,
    registry: Registry,
    sink: SettleSink,
    stats: Arc<BillingStats>,
}

/// Credit held for one request. Settle it or release it; dropping it releases it.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    account: Arc<KeyAccount>,
    held: MicroCredits,
    lease_id: Uuid,
    open: bool,
}

/// What a settled request was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub charged: MicroCredits,
    /// Approximately what the account still has available.
    pub remaining: MicroCredits,
}

// === impl Billing ===

impl Billing {
    /// Starts the engine and its background work (settlement writer, lease upkeep, reaper).
    pub fn start(store: Arc<dyn Store>, settings: BillingSettings, tasks: &Tasks) -> Billing {
        let stats = Arc::new(BillingStats::default());
        let node = Uuid::now_v7();
        let inner = Arc::new(Inner {
            sink: settler::spawn(store.clone(), stats.clone(), tasks),
            tasks: tasks.clone(),
            store,
            node,
            settings,
            registry: Registry::default(),
            stats,
        });
        upkeep::spawn(Arc::downgrade(&inner), tasks);
        tracing::info!(node = %node, "billing engine started");
        Billing { inner }
    }

    pub fn sink(&self) -> &SettleSink {
        &self.inner.sink
    }

    pub fn stats(&self) -> &BillingStats {
        &self.inner.stats
    }

    pub fn node_id(&self) -> Uuid {
        self.inner.node
    }

    /// Holds the upper-bound cost of a request, refilling this node's lease when needed.
    pub async fn reserve(&self, r: ReserveRequest<'_>) -> Result<Reserved, BillingError> {
        let inner = &self.inner;
        let p = r.principal;
        let caps = EffectiveCaps::resolve(
            inner.settings.tier_caps.for_tier(p.tier),
            overrides(p.account_caps),
            overrides(p.key_caps),
            p.spend_limit,
        );
        let explicit = r.requested_output.is_some();
        let may_lower = match inner.settings.lower_max_tokens {
            LowerMaxTokens::Never => false,
            LowerMaxTokens::Implicit => !explicit,
            LowerMaxTokens::Always => true,
        };
        // Without a known output cap the gateway forwards one, so the hold is an upper bound.
        let unknown_cap = r.model_output_cap == 0 && !explicit;
        let model_cap = if r.model_output_cap > 0 { r.model_output_cap } else { FALLBACK_OUTPUT_TOKENS };
        let choices = r.choices.max(1);
        let mut output = r.requested_output.unwrap_or(model_cap);
        let mut lowered = unknown_cap;
        let fixed = r.price.cost(&layers_domain::Usage { images: r.images, ..Default::default() });
        let cost_of = |per_choice: u32| {
            MicroCredits(credit::estimate(r.price, r.prompt_tokens, per_choice.saturating_mul(choices)).0 + fixed.0)
        };
        let fit = |budget: MicroCredits, per_choice: u32| {
            let left = MicroCredits(budget.0 - fixed.0);
            credit::affordable_output(r.price, r.prompt_tokens, left, per_choice.saturating_mul(choices))
                .map(|total| total / choices)
        };
        let mut estimate = cost_of(output);
        if let Some(cap) = caps.per_request.filter(|cap| estimate > *cap) {
            match fit(cap, output) {
                Some(n) if may_lower && n >= MIN_OUTPUT_TOKENS => {
                    output = n;
                    lowered = true;
                    estimate = cost_of(n);
                }
                _ => return Err(BillingError::TooExpensive { estimate, cap }),
            }
        }

        let account = inner.registry.account(p.user_id, p.key_id);
        if let Some(res) = inner.try_hold(&account, estimate) {
            return Ok(reserved(res, output, lowered));
        }
        let _refilling = account.refill.lock().await;
        if let Some(res) = inner.try_hold(&account, estimate) {
            return Ok(reserved(res, output, lowered));
        }
        let mut grant = inner.refill(&account, estimate, &caps).await?;
        // Requests that did not wait for this refill may take its credit before this one does
        // (early leases are small). While the balance and caps still have room, lease again
        // rather than refuse a request the account can pay for.
        for _ in 0..REFILL_ATTEMPTS {
            if let Some(res) = inner.try_hold(&account, estimate) {
                return Ok(reserved(res, output, lowered));
            }
            if room(&grant) < estimate {
                break;
            }
            grant = inner.refill(&account, estimate, &caps).await?;
        }
        if let Some(res) = inner.try_hold(&account, estimate) {
            return Ok(reserved(res, output, lowered));
        }
        // Not enough for the full output: lower it to what is covered, if allowed.
        let free = account.lock().book.free().max(0);
        let budget = MicroCredits(free + room(&grant).0);
        if may_lower {
            if let Some(n) = fit(budget, output) {
                if n >= MIN_OUTPUT_TOKENS {
                    let smaller = cost_of(n);
                    if account.lock().book.free() < smaller.0 {
                        inner.refill(&account, smaller, &caps).await?;
                    }
                    if let Some(res) = inner.try_hold(&account, smaller) {
                        return Ok(reserved(res, n, true));
                    }
                }
            }
        }
        Err(refusal(&grant, &caps, estimate, budget))
    }

    /// Approximately what the principal's account still has available (for response headers).
    pub fn remaining(&self, p: &Principal) -> MicroCredits {
        MicroCredits(self.inner.registry.account(p.user_id, p.key_id).credit.remaining())
    }

    /// Ends every lease of this node, giving unspent credit back (graceful shutdown, after the
    /// settlement writer has flushed).
    pub async fn release_all(&self) {
        upkeep::release_all(&self.inner).await;
    }
}

fn reserved(reservation: Reservation, max_output: u32, lowered: bool) -> Reserved {
    Reserved { reservation, max_output, lowered_to: lowered.then_some(max_output) }
}

fn overrides(c: CapOverrides) -> credit::Caps {
    credit::Caps { per_request: c.per_request, per_hour: c.per_hour }
}

/// The most the database could still grant, by the tightest limit.
/// Refills one reservation may make when others keep taking the credit it leased.
const REFILL_ATTEMPTS: usize = 4;

fn room(g: &LeaseGrant) -> MicroCredits {
    [Some(g.available), g.account_hour_room, g.key_hour_room, g.key_total_room]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MicroCredits::ZERO)
        .max(MicroCredits::ZERO)
}

/// Which limit refused the request.
fn refusal(g: &LeaseGrant, caps: &EffectiveCaps, needed: MicroCredits, available: MicroCredits) -> BillingError {
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

// === impl Inner ===

impl Inner {
    fn try_hold(self: &Arc<Self>, account: &Arc<KeyAccount>, amount: MicroCredits) -> Option<Reservation> {
        let mut b = account.lock();
        if !b.book.try_hold(amount) {
            return None;
        }
        b.last_active = Instant::now();
        account.credit.pending.fetch_add(amount.0, Ordering::Relaxed);
        Some(Reservation {
            inner: self.clone(),
            account: account.clone(),
            held: amount,
            lease_id: b.lease_id,
            open: true,
        })
    }

    /// Leases more credit for the key. The database call and the book update run in a task
    /// the engine owns: a request that goes away mid-refill must not leave a lease the
    /// database granted but the book never learned of.
    async fn refill(
        self: &Arc<Self>,
        account: &Arc<KeyAccount>,
        need: MicroCredits,
        caps: &EffectiveCaps,
    ) -> Result<LeaseGrant, BillingError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (this, account, caps) = (self.clone(), account.clone(), *caps);
        self.tasks.spawn("lease-refill", async move {
            let _ = tx.send(this.refill_now(&account, need, &caps).await);
        });
        rx.await.unwrap_or(Err(BillingError::Unavailable(StoreError::NotFound { entity: "lease refill" })))
    }

    /// Leases at least what `need` lacks, more when refills come fast.
    async fn refill_now(
        &self,
        account: &KeyAccount,
        need: MicroCredits,
        caps: &EffectiveCaps,
    ) -> Result<LeaseGrant, BillingError> {
        self.stats.refills.fetch_add(1, Ordering::Relaxed);
        for _ in 0..2 {
            let (lease_id, min, want) = {
                let b = account.lock();
                let min = (need.0 - b.book.free()).max(1);
                let hot = b.last_refill.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                let block = if hot { b.block.saturating_mul(2) } else { need.0.saturating_mul(4) };
                let want = block.clamp(min, self.settings.max_block.0.max(min));
                (b.lease_id, min, want)
            };
            let req = LeaseRequest {
                lease_id,
                user: account.user,
                key: account.key,
                node: self.node,
                min: MicroCredits(min),
                want: MicroCredits(want),
                account_hour_cap: caps.account_per_hour,
                key_hour_cap: caps.key_per_hour,
                key_total_cap: caps.key_total,
                ttl: self.settings.lease_ttl,
            };
            let grant = self.store.acquire_lease(&req).await.map_err(BillingError::Unavailable)?;
            account.credit.balance.store(grant.balance.0, Ordering::Relaxed);
            let mut b = account.lock();
            if grant.lease_ended {
                // The reaper ended our lease while this node was stalled: start a new one.
                if b.lease_id == lease_id {
                    reset_book(&mut b, &account.credit);
                }
                continue;
            }
            if grant.granted.is_positive() && b.lease_id == lease_id {
                b.book.add_lease(grant.granted);
                b.leased_once = true;
                b.block = want;
                b.last_refill = Some(Instant::now());
            }
            return Ok(grant);
        }
        Err(BillingError::Unavailable(StoreError::NotFound { entity: "active credit lease" }))
    }
}

/// Forgets a lease the database no longer has: what it held is gone with it.
fn reset_book(b: &mut accounts::Book, credit: &accounts::UserCredit) {
    credit.pending.fetch_sub(b.book.held + b.book.unflushed, Ordering::Relaxed);
    b.book = Default::default();
    b.lease_id = Uuid::now_v7();
    b.leased_once = false;
    b.block = 0;
    b.last_refill = None;
}

// === impl Reservation ===

impl Reservation {
    pub fn held(&self) -> MicroCredits {
        self.held
    }

    /// Settles to the actual cost and queues the usage row and ledger debit. Never awaits.
    /// The lease pays what it can; a cost beyond it goes to the database as an overage, paid
    /// from what the balance has beyond every lease, and any rest is recorded as a shortfall.
    pub fn settle(mut self, mut usage: UsageRecord) -> Charge {
        self.open = false;
        let (charged, overage, live) = {
            let mut b = self.account.lock();
            if b.lease_id != self.lease_id {
                // The lease this hold was made on has ended (its book was reset, pending and
                // all): nothing can be charged against it. Recorded by the writer.
                (MicroCredits::ZERO, MicroCredits::ZERO, false)
            } else {
                let credit = &self.account.credit;
                credit.pending.fetch_sub(self.held.0, Ordering::Relaxed);
                let s = b.book.settle(self.held, usage.cost);
                credit.pending.fetch_add(s.charged.0, Ordering::Relaxed);
                b.last_active = Instant::now();
                (s.charged, s.shortfall, true)
            }
        };
        usage.charged = charged;
        // The overage is paid from what the balance has beyond the leases, as far as it goes:
        // the headers show this node's best estimate of that.
        let available = MicroCredits(self.account.credit.remaining());
        let overage_paid = overage.min(available);
        let remaining = available.saturating_sub(overage_paid);
        let settlement = Settlement { usage, lease_id: charged.is_positive().then_some(self.lease_id), overage };
        if live {
            self.inner.sink.send(settlement, Some((self.account.clone(), self.lease_id)), Outcome::Settled);
        } else {
            self.inner.stats.refused_settlements.fetch_add(1, Ordering::Relaxed);
            self.inner.sink.send(settlement, None, Outcome::LeaseGone);
        }
        Charge { charged: charged.saturating_add(overage_paid), remaining }
    }

    /// Ends the hold without charging; the usage row is still recorded.
    pub fn release(mut self, mut usage: UsageRecord) -> Charge {
        self.release_hold();
        usage.charged = MicroCredits::ZERO;
        self.inner.sink.send(Settlement { usage, lease_id: None, overage: MicroCredits::ZERO }, None, Outcome::Settled);
        Charge { charged: MicroCredits::ZERO, remaining: MicroCredits(self.account.credit.remaining()) }
    }

    fn release_hold(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut b = self.account.lock();
        // A reset book already forgot this hold (and its share of `pending`).
        if b.lease_id == self.lease_id {
            self.account.credit.pending.fetch_sub(self.held.0, Ordering::Relaxed);
            b.book.release(self.held);
            b.last_active = Instant::now();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A hold must never leak: that would shrink the available credit until restart.
        self.release_hold();
    }
}
