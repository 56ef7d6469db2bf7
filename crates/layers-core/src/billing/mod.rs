//! Credits on the hot path (SPEC §4.2): estimate → hold → settle, against credit this node
//! leased from the database. Invariant: a hold only exists inside a lease the database granted
//! out of the balance (minus every node's leases, within the caps), and a charge is decided here,
//! once, and applied by the database exactly as decided (or refused when its lease has ended):
//! so no concurrency and no number of nodes can overspend, and the charge a client is told is
//! the debit. A database round trip happens only to refill a lease.

mod books;
mod gate;
mod journal;
mod refill;
mod reservation;
mod reserve;
mod settler;
mod upkeep;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use layers_domain::credit::TierCaps;
use layers_domain::{MicroCredits, UserId};
use layers_store::Store;
use uuid::Uuid;

use self::books::Registry;
use self::gate::DbGate;
pub use self::gate::Unavailable;
pub use self::reservation::{Charge, Reservation};
pub use self::reserve::{ReserveRequest, Reserved};
pub use self::settler::SettleSink;
use crate::auth::Principal;
use crate::broadcast::Broadcaster;
use crate::clock::Clock;
use crate::tasks::Tasks;

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
    /// Longest a database call of billing may take before it counts as failed.
    pub db_timeout: Duration,
    /// Longest a request waits for other leases of its account to give back credit it needs.
    pub reclaim_wait: Duration,
    /// Settlements waiting to be written beyond which new requests wait (then get 503).
    pub max_backlog: u64,
    /// How long a new request may wait for the backlog to fall under `max_backlog`.
    pub backlog_wait: Duration,
    /// Where settlements that could not be written by the end of a shutdown are kept, to be
    /// written at the next start.
    pub journal: Option<PathBuf>,
    /// How long a shutdown keeps retrying settlements before journaling the rest.
    pub shutdown_deadline: Duration,
    /// Bytes of prompt text per token counted in a hold (1: an exact upper bound for the
    /// byte-level tokenizers of every provider; more: smaller holds, charges may pass them).
    pub prompt_bytes_per_token: u32,
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
            db_timeout: Duration::from_secs(2),
            reclaim_wait: Duration::from_secs(2),
            max_backlog: 20_000,
            backlog_wait: Duration::from_secs(2),
            journal: None,
            shutdown_deadline: Duration::from_secs(10),
            prompt_bytes_per_token: 1,
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
    Unavailable(#[source] Unavailable),
}

impl From<Unavailable> for BillingError {
    fn from(err: Unavailable) -> Self {
        BillingError::Unavailable(err)
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct BillingStats {
    /// Accounts charged since the alert job last looked.
    pub charged: ChargedAccounts,
    pub refills: AtomicU64,
    pub shortfalls: AtomicU64,
    pub shortfall_micros: AtomicU64,
    pub refused_settlements: AtomicU64,
    /// Requests that waited for other leases to give back credit.
    pub reclaims: AtomicU64,
    /// Requests that waited because settlements were not written fast enough.
    pub backpressure_waits: AtomicU64,
    /// Settlements written to the journal at shutdown, and replayed at start.
    pub journaled: AtomicU64,
    pub replayed: AtomicU64,
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
    gate: DbGate,
    sink: SettleSink,
    stats: Arc<BillingStats>,
    /// Tells other nodes at once (over Redis) when this node needs credit their leases hold.
    broadcaster: Broadcaster,
    /// Calendar limits reset by this clock's UTC days.
    clock: Clock,
    /// Requests refused as too expensive go to the audit trail, once a minute per account.
    audit: crate::audit::Audit,
    expensive_noted: std::sync::Mutex<std::collections::HashMap<UserId, i64>>,
}

// === impl Billing ===

impl Billing {
    /// Starts the engine and its background work (settlement writer, lease upkeep, reaper),
    /// after writing what a previous shutdown journaled.
    /// The accounts charged since the last call (for the alert job), at most
    /// [`ChargedAccounts::CAPACITY`] of them.
    pub fn take_charged(&self) -> Vec<UserId> {
        self.inner.stats.charged.take()
    }

    pub async fn start(
        store: Arc<dyn Store>,
        settings: BillingSettings,
        broadcaster: Broadcaster,
        tasks: &Tasks,
        clock: Clock,
    ) -> Billing {
        let stats = Arc::new(BillingStats::default());
        if let Some(path) = &settings.journal {
            journal::replay(path, &store, &stats).await;
        }
        let node = Uuid::now_v7();
        let store_for_audit = store.clone();
        let inner = Arc::new(Inner {
            sink: settler::spawn(store.clone(), stats.clone(), &settings, tasks),
            gate: DbGate::new(settings.db_timeout),
            tasks: tasks.clone(),
            store,
            node,
            settings,
            registry: Registry::default(),
            stats,
            broadcaster,
            clock,
            audit: crate::audit::Audit::new(store_for_audit),
            expensive_noted: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        upkeep::spawn(&inner, tasks);
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

    /// How long a shutdown gives request work and then the settlement writer.
    pub fn shutdown_deadline(&self) -> Duration {
        self.inner.settings.shutdown_deadline
    }

    /// Whether billing's last database call succeeded.
    pub fn database_up(&self) -> bool {
        self.inner.gate.is_up()
    }

    /// Database calls of billing that failed or timed out.
    pub fn database_failures(&self) -> u64 {
        self.inner.gate.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Holds the upper-bound cost of a request, refilling this node's lease when needed.
    pub async fn reserve(&self, r: ReserveRequest<'_>) -> Result<Reserved, BillingError> {
        reserve::reserve(&self.inner, r).await
    }

    /// Admits a request that is never billed (a test key): it still waits, like billed ones,
    /// while settlements are not written fast enough, since its usage row joins that queue.
    pub async fn admit_unbilled(&self) -> Result<(), BillingError> {
        reserve::wait_for_backlog(&self.inner).await
    }

    /// Approximately what the principal's account still has available (for response headers).
    pub fn remaining(&self, p: &Principal) -> MicroCredits {
        MicroCredits(self.inner.registry.account(p.user_id, p.key_id).credit.remaining())
    }

    /// Another node asked for the account's credit back (reclaim `epoch`): give back what this
    /// node's leases of it do not hold for requests in flight.
    pub fn reclaim_requested(&self, user: UserId, epoch: i64) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn("credit-reclaim", async move {
            refill::answer_reclaim(&inner, user, epoch, None).await;
        });
    }

    /// The account changed (a refund or dispute may have ended its leases): this node's
    /// leases of it are renewed now, and those the database ended are dropped.
    pub fn account_changed(&self, user: UserId) {
        let accounts = self.inner.registry.of_user(user);
        if accounts.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        self.inner.tasks.spawn("credit-lease-check", async move {
            upkeep::renew_these(&inner, accounts).await;
        });
    }

    /// Ends every lease of this node, giving unspent credit back (graceful shutdown, after the
    /// settlement writer has flushed).
    pub async fn release_all(&self) {
        upkeep::release_all(&self.inner).await;
    }
}

/// Accounts whose balance moved since the alert job last looked: a bounded set (past its
/// capacity new accounts wait for the next charge; the low-balance check runs again then).
#[derive(Debug, Default)]
pub struct ChargedAccounts {
    set: std::sync::Mutex<std::collections::HashSet<UserId>>,
}

impl ChargedAccounts {
    pub const CAPACITY: usize = 100_000;

    pub(crate) fn note(&self, user: UserId) {
        let mut set = self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.len() < Self::CAPACITY {
            set.insert(user);
        }
    }

    fn take(&self) -> Vec<UserId> {
        let mut set = self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.drain().collect()
    }
}
