//! `layers admin demo seed --email E`: fills an account with a month of realistic usage, so the
//! dashboard can be tried (and photographed) before any real traffic. Everything goes through
//! the store's real paths: keys through the key service, credit through the ledger, each day's
//! requests settled against a lease like the gateway's own, so balance = sum of the ledger and
//! every key's spend, limits and charts are what real traffic would show. Refused in production.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use layers_core::accounts::AccountService;
use layers_core::keys::{KeyService, NewKeyRequest};
use layers_domain::dashboard::SpendPeriod;
use layers_domain::{KeyEnv, KeyId, MicroCredits, ModelSpec, Usage, UserId};
use layers_store::{
    CapOverrides, KeyLimits, LeaseRequest, LeaseReturn, NewTransaction, Settlement, Store, TransactionKind, UsageRecord,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// One model of the demo's traffic.
struct Share {
    model: &'static str,
    /// Its share of requests, in ‰.
    per_mille: u32,
    prompt: (u32, u32),
    completion: (u32, u32),
}

const MIX: [Share; 3] = [
    Share { model: "openai/gpt-5-mini", per_mille: 450, prompt: (300, 3_000), completion: (60, 700) },
    Share { model: "anthropic/claude-sonnet-4.5", per_mille: 350, prompt: (800, 6_000), completion: (150, 1_200) },
    Share { model: "google/gemini-2.5-flash", per_mille: 200, prompt: (400, 8_000), completion: (80, 900) },
];

/// A small deterministic generator (xorshift), so two seeds draw the same month.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + u32::try_from(self.next() % u64::from(hi - lo + 1)).unwrap_or(0)
    }
}

pub async fn seed(
    store: &Arc<dyn Store>,
    accounts: &AccountService,
    keys: &KeyService,
    models: &[ModelSpec],
    markup: layers_domain::Markup,
    email: &str,
    days: u32,
) -> anyhow::Result<()> {
    if !(1..=90).contains(&days) {
        bail!("--days must be from 1 to 90");
    }
    let user = accounts.user_by_email(email).await?;
    let now = OffsetDateTime::now_utc();
    let start = now - time::Duration::days(i64::from(days) + 1);
    let price = |name: &str| -> anyhow::Result<layers_domain::Price> {
        let spec = models
            .iter()
            .find(|m| m.name.as_str() == name)
            .with_context(|| format!("{name} is not in the catalogue"))?;
        Ok(spec.list_price.with_markup(markup))
    };
    credit(store, user.id, "Welcome credits", 2_000, start).await?;
    credit(store, user.id, "Top-up", 1_500, now - time::Duration::days(i64::from(days / 3).max(1))).await?;
    let key = |name: &str, env: KeyEnv, expires_in: Option<i64>| NewKeyRequest {
        user: user.id,
        env,
        name: name.to_owned(),
        spend_limit: None,
        limit_period: SpendPeriod::Total,
        expires_at: expires_in.map(|d| now + time::Duration::days(d)),
        created_at: Some(start),
    };
    let production = keys.create(key("Production backend", KeyEnv::Live, Some(60))).await?.record;
    let staging = keys.create(key("Staging", KeyEnv::Live, Some(5))).await?.record;
    let notebook = keys.create(key("Data team notebook", KeyEnv::Live, None)).await?.record;
    keys.create(key("Local tests", KeyEnv::Test, Some(90))).await?;
    let monthly =
        KeyLimits { spend_limit: Some(credits(2_000)), period: SpendPeriod::Month, caps: CapOverrides::default() };
    keys.set_limits(user.id, production.id, monthly).await?;
    let daily = KeyLimits { spend_limit: Some(credits(10)), period: SpendPeriod::Day, caps: CapOverrides::default() };
    keys.set_limits(user.id, staging.id, daily).await?;

    let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
    let mut written = 0usize;
    let mut last_used: std::collections::HashMap<KeyId, OffsetDateTime> = std::collections::HashMap::new();
    // The last `days` days and today, up to now.
    for day in 0..=days {
        let day_start = (now - time::Duration::days(i64::from(days - day))).date().midnight().assume_utc();
        let weekday = day_start.weekday().number_days_from_monday();
        // Weekdays busier than weekends, and the month growing.
        let base = if weekday < 5 { 60 } else { 22 };
        let n = base + day * 2 + draw.range(0, 20);
        let mut rows: Vec<(KeyId, UsageRecord)> = Vec::new();
        for i in 0..n {
            let roll = draw.range(0, 999);
            let Share { model, prompt: (p_lo, p_hi), completion: (c_lo, c_hi), .. } = *pick(roll);
            let key = match draw.range(0, 19) {
                0..=14 => &production,
                15 => &staging,
                _ => &notebook,
            };
            let at =
                day_start + time::Duration::seconds(i64::from(8 * 3600 + (i * 50_000 / n.max(1)) + draw.range(0, 40)));
            if at > now {
                continue;
            }
            let failed = draw.range(0, 99) < 2;
            let usage = if failed {
                Usage::default()
            } else {
                let prompt = draw.range(p_lo, p_hi);
                Usage {
                    prompt_tokens: prompt,
                    completion_tokens: draw.range(c_lo, c_hi),
                    cached_tokens: if draw.range(0, 2) == 0 { prompt / 2 } else { 0 },
                    reasoning_tokens: if model.starts_with("openai/") { draw.range(0, 200) } else { 0 },
                    ..Usage::default()
                }
            };
            // Some requests come from apps that name themselves (OpenRouter's attribution).
            let app = match draw.range(0, 3) {
                0 => Some(("Support assistant", "https://support.acme.example")),
                1 => Some(("Docs search", "https://docs.acme.example")),
                _ => None,
            };
            let price = price(model)?;
            let cost = price.cost(&usage);
            let held = price.cost(&Usage { completion_tokens: c_hi * 2, ..usage }).max(cost);
            rows.push((
                key.id,
                UsageRecord {
                    id: Uuid::now_v7(),
                    request_id: format!("req_{}", Uuid::new_v4().simple()),
                    user_id: user.id,
                    key_id: Some(key.id),
                    model: model.to_owned(),
                    provider: model.split('/').next().unwrap_or("openai").to_owned(),
                    upstream_model: model.split('/').nth(1).unwrap_or(model).to_owned(),
                    endpoint: "chat".into(),
                    usage,
                    cost,
                    charged: cost,
                    held,
                    shortfall: MicroCredits::ZERO,
                    fees: MicroCredits::ZERO,
                    rates: price.rates_for(usage.prompt_tokens),
                    latency_ms: i64::from(draw.range(280, 4_200)),
                    status: if failed { 502 } else { 200 },
                    error_code: failed.then(|| "upstream_error".to_owned()),
                    streamed: draw.range(0, 1) == 0,
                    usage_estimated: false,
                    created_at: at,
                    app_title: app.map(|(title, _)| title.to_owned()),
                    app_origin: app.map(|(_, origin)| origin.to_owned()),
                },
            ));
        }
        for (key, row) in &rows {
            last_used.entry(*key).and_modify(|t| *t = (*t).max(row.created_at)).or_insert(row.created_at);
        }
        for key in [production.id, staging.id, notebook.id] {
            let batch: Vec<UsageRecord> = rows.iter().filter(|(k, _)| *k == key).map(|(_, r)| r.clone()).collect();
            written += settle_day(store, user.id, key, batch).await?;
        }
    }
    store.touch_keys(&last_used.into_iter().collect::<Vec<_>>()).await?;
    eprintln!("seeded {written} requests over {days} days and today for the account");
    Ok(())
}

fn pick(roll: u32) -> &'static Share {
    let mut acc = 0;
    for share in &MIX {
        acc += share.per_mille;
        if roll < acc {
            return share;
        }
    }
    &MIX[0]
}

fn credits(n: i64) -> MicroCredits {
    MicroCredits(n * 1_000_000)
}

async fn credit(
    store: &Arc<dyn Store>,
    user: UserId,
    reason: &str,
    amount: i64,
    at: OffsetDateTime,
) -> anyhow::Result<()> {
    store
        .apply_transaction(&NewTransaction {
            id: Uuid::new_v4(),
            user_id: user,
            kind: TransactionKind::Grant,
            amount: credits(amount),
            idempotency_key: format!("demo:{user}:{reason}"),
            reason: Some(reason.to_owned()),
            request_id: None,
            allow_negative: false,
            created_at: at,
        })
        .await?;
    Ok(())
}

/// Settles one day's requests of one key against a lease of exactly their cost, as a node does.
async fn settle_day(store: &Arc<dyn Store>, user: UserId, key: KeyId, rows: Vec<UsageRecord>) -> anyhow::Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let total: i64 = rows.iter().map(|r| r.charged.0).sum();
    let lease = Uuid::now_v7();
    if total > 0 {
        let grant = store
            .acquire_lease(&LeaseRequest {
                lease_id: lease,
                user,
                key,
                node: Uuid::nil(),
                min: MicroCredits(total),
                want: MicroCredits(total),
                account_hour_cap: None,
                key_hour_cap: None,
                key_total_cap: None,
                key_period_from_day: None,
                ttl: Duration::from_secs(60),
            })
            .await?;
        if grant.granted.0 < total {
            bail!("the balance does not cover the demo month");
        }
    }
    let n = rows.len();
    let batch: Vec<Settlement> = rows
        .into_iter()
        .map(|usage| Settlement { lease_id: (usage.charged.is_positive()).then_some(lease), usage })
        .collect();
    store.settle(&batch).await?;
    store
        .return_leases(&[LeaseReturn { user, lease, amount: MicroCredits::ZERO, end: true, reclaim_epoch: None }])
        .await?;
    Ok(n)
}
