//! The operator's `layers admin` commands. Invariant: they go through the same services (and
//! so the same ledger and audit log) as the product; stdout carries only the result.

use std::sync::Arc;

use anyhow::{bail, Context};
use layers_core::accounts::{AccountService, CreditChange};
use layers_core::audit::Audit;
use layers_core::auth::cache::KeyCache;
use layers_core::broadcast::Broadcaster;
use layers_core::keys::KeyService as Keys;
use layers_core::keys::{KeyService, NewKeyRequest};
use layers_core::redis_conn::Redis;
use layers_core::tasks::Tasks;
use layers_domain::{KeyEnv, MicroCredits, Tier};
use layers_store::{CapOverrides, KeyLimits, KeyRecord, KeyState, RateOverrides, Store};

use crate::cli::{AdminCommand, CreditsCommand, DemoCommand, KeyCommand, LeasesCommand, StripeCommand, UserCommand};
use crate::config::Settings;
use crate::output::emit;
use crate::startup;

pub async fn run(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let store = startup::open_store(&settings.database, settings.production).await?;
    // With Redis, changes reach every serving node at once; without it (or if it is down) they
    // arrive through the database's invalidation feed within a poll.
    let tasks = Tasks::new();
    let redis = match settings.redis.clone() {
        Some(r) => Some(Redis::connect(r, &tasks).await?),
        None => None,
    };
    let broadcaster = Broadcaster::new(redis, None);
    let result = dispatch(&settings, store.clone(), broadcaster, command).await;
    tasks.shutdown(std::time::Duration::from_secs(10)).await;
    store.close().await;
    result
}

async fn dispatch(
    settings: &Settings,
    store: Arc<dyn Store>,
    broadcaster: Broadcaster,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let audit = Audit::new(store.clone());
    let accounts = AccountService::new(store.clone(), audit.clone(), broadcaster.clone());
    match command {
        AdminCommand::User { command } => user(&accounts, command).await?,
        AdminCommand::SecurityEvents { event_type, limit } => {
            for e in store.system_audit_events(event_type.as_deref(), limit).await? {
                let ip = e.ip_address.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
                emit(&format!("{}\t{}\t{}\t{ip}\t{}", e.created_at, e.severity.as_str(), e.event_type, e.metadata));
            }
        }
        AdminCommand::Leases { command: LeasesCommand::Reap } => {
            let reaped = store.reap_expired_leases().await?;
            emit(&format!("{} {}", reaped.leases, MicroCredits(reaped.micros)));
        }
        AdminCommand::Key { command } => {
            let peppers = Arc::new(startup::load_peppers(&settings.pepper)?);
            let cache = Arc::new(KeyCache::new(16, std::time::Duration::from_secs(1)));
            let keys =
                KeyService::new(store.clone(), peppers, cache, audit, broadcaster, layers_core::clock::Clock::system());
            key(&accounts, &keys, command).await?;
        }
        AdminCommand::Credits { command } => credits(&accounts, command).await?,
        AdminCommand::Stripe { command: StripeCommand::Reconcile } => {
            let Some(payments) = settings.payments.clone() else {
                bail!("Stripe is not configured: set [stripe] secret_key and webhook_secrets (or LAYERS_STRIPE__SECRET_KEY)");
            };
            let tasks = Tasks::new();
            let mailer =
                layers_core::identity::mailer::Mailer::start(startup::mail_transport(&settings.email)?, &tasks);
            let service = layers_core::payments::PaymentService::for_operator(
                store.clone(),
                payments,
                audit,
                broadcaster,
                mailer,
            )?;
            let r = service.reconcile().await;
            // The e-mails a reconciliation queued (auto top-up turned off) go out before exit.
            tasks.shutdown(std::time::Duration::from_secs(10)).await;
            let r = r?;
            if r.failed > 0 {
                bail!("{} of {} events could not be applied now (see the log); run it again", r.failed, r.listed);
            }
            emit(&format!(
                "listed {} applied {} already_applied {} ignored {} unreadable {} failed {}",
                r.listed, r.applied, r.already_applied, r.ignored, r.unreadable, r.failed
            ));
        }
        AdminCommand::Demo { command: DemoCommand::Seed { email, days } } => {
            if settings.production {
                bail!("demo data is refused in production (LAYERS_ENV=production)");
            }
            let peppers = Arc::new(startup::load_peppers(&settings.pepper)?);
            let cache = Arc::new(KeyCache::new(16, std::time::Duration::from_secs(1)));
            let keys =
                KeyService::new(store.clone(), peppers, cache, audit, broadcaster, layers_core::clock::Clock::system());
            crate::demo::seed(&store, &accounts, &keys, &settings.models, settings.markup, &email, days).await?;
        }
    }
    Ok(())
}

async fn user(accounts: &AccountService, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { email, tier } => {
            let tier: Tier = tier.parse()?;
            let user = accounts.create_user(&email, tier).await?;
            emit(&user.id.to_string());
        }
        UserCommand::SetTier { email, tier } => {
            let user = accounts.user_by_email(&email).await?;
            accounts.set_tier(user.id, tier.parse()?).await?;
            emit(&user.id.to_string());
        }
        UserCommand::SetCaps { email, per_request, per_hour } => {
            let user = accounts.user_by_email(&email).await?;
            let caps = CapOverrides {
                per_request: limit_arg(per_request.as_deref(), user.caps.per_request)?,
                per_hour: limit_arg(per_hour.as_deref(), user.caps.per_hour)?,
            };
            accounts.set_caps(user.id, caps).await?;
            emit(&user.id.to_string());
        }
        UserCommand::SetRateLimit { email, rpm, tpm } => {
            let user = accounts.user_by_email(&email).await?;
            let rate = RateOverrides {
                requests_per_minute: count_arg("--rpm", rpm.as_deref(), user.rate.requests_per_minute)?,
                tokens_per_minute: count_arg("--tpm", tpm.as_deref(), user.rate.tokens_per_minute)?,
            };
            accounts.set_rate(user.id, rate).await?;
            emit(&user.id.to_string());
        }
    }
    Ok(())
}

async fn key(accounts: &AccountService, keys: &KeyService, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { email, env, name, spend_limit } => {
            let user = accounts.user_by_email(&email).await?;
            let env: KeyEnv = env.parse()?;
            let spend_limit = spend_limit.as_deref().map(parse_credits).transpose()?;
            let created = keys
                .create(NewKeyRequest {
                    user: user.id,
                    env,
                    name,
                    spend_limit,
                    limit_period: Default::default(),
                    expires_at: None,
                    created_at: None,
                })
                .await?;
            emit(created.key.expose());
        }
        KeyCommand::Deactivate { prefix } => {
            let key = key_by_prefix(keys, &prefix).await?;
            let done = keys.set_state(key.user_id, key.id, KeyState::Deactivated).await?;
            emit(&done.id.to_string());
        }
        KeyCommand::SetLimits { prefix, per_request, per_hour, spend_limit } => {
            let key = key_by_prefix(keys, &prefix).await?;
            let caps = CapOverrides {
                per_request: limit_arg(per_request.as_deref(), key.caps.per_request)?,
                per_hour: limit_arg(per_hour.as_deref(), key.caps.per_hour)?,
            };
            let spend_limit = limit_arg(spend_limit.as_deref(), key.spend_limit)?;
            let limits = KeyLimits { caps, spend_limit, period: key.limit_period };
            let done = keys.set_limits(key.user_id, key.id, limits).await?;
            emit(&done.id.to_string());
        }
        KeyCommand::List { email } => {
            let user = accounts.user_by_email(&email).await?;
            for k in keys.list(user.id).await? {
                let last_used = k.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
                emit(&format!(
                    "{}\t{}…{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.display_prefix,
                    k.last4,
                    k.env,
                    k.state.as_str(),
                    k.name,
                    k.created_at,
                    last_used
                ));
            }
        }
    }
    Ok(())
}

async fn credits(accounts: &AccountService, command: CreditsCommand) -> anyhow::Result<()> {
    match command {
        CreditsCommand::Grant { email, credits, reason } => {
            let amount = parse_credits(&credits)?;
            if !amount.is_positive() {
                bail!("--credits must be positive for a grant; use `credits adjust` to remove credits");
            }
            let user = accounts.user_by_email(&email).await?;
            let balance =
                accounts.change_credits(CreditChange { user: user.id, amount, reason, idempotency_key: None }).await?;
            emit(&balance.to_string());
        }
        CreditsCommand::Adjust { email, credits, reason } => {
            let amount = parse_credits(&credits)?;
            let user = accounts.user_by_email(&email).await?;
            let balance =
                accounts.change_credits(CreditChange { user: user.id, amount, reason, idempotency_key: None }).await?;
            emit(&balance.to_string());
        }
        CreditsCommand::Show { email } => {
            let user = accounts.user_by_email(&email).await?;
            emit(&accounts.balance(user.id).await?.to_string());
        }
    }
    Ok(())
}

/// The one live key with this display prefix.
async fn key_by_prefix(keys: &Keys, prefix: &str) -> anyhow::Result<KeyRecord> {
    let mut found = keys.find_by_prefix(prefix.trim()).await?;
    found.retain(|k| k.state != KeyState::Deleted);
    match found.len() {
        0 => bail!("no key has the display prefix {prefix:?}"),
        1 => Ok(found.remove(0)),
        n => bail!(
            "{n} keys share this prefix ({}); act on them from the dashboard by id",
            found.iter().map(|k| k.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A limit argument: absent keeps `current`, `default` removes the override, else credits.
fn limit_arg(arg: Option<&str>, current: Option<MicroCredits>) -> anyhow::Result<Option<MicroCredits>> {
    match arg {
        None => Ok(current),
        Some("default") | Some("none") => Ok(None),
        Some(text) => {
            let amount = parse_credits(text)?;
            if amount.0 < 0 {
                bail!("limits are zero or more credits");
            }
            Ok(Some(amount))
        }
    }
}

/// A count argument: absent keeps `current`, `default` removes the override, else a positive
/// whole number.
fn count_arg<T: std::str::FromStr + Default + PartialEq>(
    flag: &str,
    arg: Option<&str>,
    current: Option<T>,
) -> anyhow::Result<Option<T>> {
    match arg {
        None => Ok(current),
        Some("default") | Some("none") => Ok(None),
        Some(text) => match text.trim().parse::<T>() {
            Ok(v) if v != T::default() => Ok(Some(v)),
            _ => bail!("{flag} {text:?} must be a whole number greater than zero, or \"default\""),
        },
    }
}

fn parse_credits(text: &str) -> anyhow::Result<MicroCredits> {
    MicroCredits::parse_credits(text).with_context(|| format!("--credits {text:?} is not a number of credits"))
}
