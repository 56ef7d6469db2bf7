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
use layers_store::{CapOverrides, KeyLimits, KeyRecord, KeyState, RateOverrides, Store, UserStatus};

use crate::cli::{
    AdminCommand, CreditsCommand, DemoCommand, KeyCommand, KeyTarget, LeasesCommand, SessionsCommand, StripeCommand,
    UserCommand,
};
use crate::config::Settings;
use crate::output::emit;
use crate::startup;

pub async fn run(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::User { command: whole @ (UserCommand::Export { .. } | UserCommand::Delete { .. }) } = command {
        return whole_account(settings, whole).await;
    }
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
        AdminCommand::User { command } => user(&accounts, &store, command).await?,
        AdminCommand::Sessions { command: SessionsCommand::Revoke { email, all } } => {
            let ended = match (email, all) {
                (Some(email), _) => accounts.revoke_sessions(accounts.user_by_email(&email).await?.id).await?,
                (None, true) => accounts.revoke_every_session().await?,
                (None, false) => bail!("name an account with --email, or everyone with --all"),
            };
            emit(&ended.to_string());
        }
        AdminCommand::Audit { email, types, since, severity, limit } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let worst = severity.as_deref().map(severity_rank).unwrap_or(0);
            let events = match email {
                Some(email) => {
                    let user = accounts.user_by_email(&email).await?;
                    let filter = layers_store::AuditFilter { types: types.clone(), since, before: None };
                    store.audit_events_filtered(user.id, &filter, 10_000).await?
                }
                None => {
                    let mut all = store.system_audit_events(None, 10_000).await?;
                    all.retain(|e| {
                        (types.is_empty() || types.contains(&e.event_type)) && since.is_none_or(|s| e.created_at >= s)
                    });
                    all
                }
            };
            for e in events.iter().filter(|e| severity_rank(e.severity.as_str()) >= worst).take(limit as usize) {
                let ip = e.ip_address.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
                emit(&format!("{}\t{}\t{}\t{ip}\t{}", e.created_at, e.severity.as_str(), e.event_type, e.metadata));
            }
        }
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

/// Export or delete an account: the same services the dashboard's "Export my data" and
/// "Delete account" use, started for the command and stopped after it.
async fn whole_account(settings: Settings, command: UserCommand) -> anyhow::Result<()> {
    if let UserCommand::Delete { yes: false, .. } = command {
        bail!("deleting an account cannot be undone: add --yes");
    }
    // The services only: no metrics listener (a server on this host may hold its address).
    let mut settings = settings;
    settings.metrics_listen = None;
    let prepared = startup::prepare(settings).await?;
    let core = prepared.core.clone();
    let done = async {
        match command {
            UserCommand::Export { email } => {
                let user = core.accounts.user_by_email(&email).await?;
                let document = core.identity.export_for_operator(user.id).await?;
                emit(&serde_json::to_string_pretty(&document)?);
            }
            UserCommand::Delete { email, .. } => {
                let user = core.accounts.user_by_email(&email).await?;
                core.delete_account_for_operator(user.id).await?;
                emit(&user.id.to_string());
            }
            _ => {}
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    core.shutdown().await;
    core.close().await;
    done
}

async fn user(accounts: &AccountService, store: &Arc<dyn Store>, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Suspend { email } => {
            let user = accounts.user_by_email(&email).await?;
            accounts.set_status(user.id, UserStatus::Suspended).await?;
            emit(&user.id.to_string());
        }
        UserCommand::Unsuspend { email } => {
            let user = accounts.user_by_email(&email).await?;
            accounts.set_status(user.id, UserStatus::Active).await?;
            emit(&user.id.to_string());
        }
        UserCommand::Usage { email, limit } => {
            let user = accounts.user_by_email(&email).await?;
            for u in store.recent_usage(user.id, limit, None).await? {
                let key = u.key_id.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
                emit(&format!("{}\t{}\t{key}\t{}\t{}\t{}", u.created_at, u.request_id, u.model, u.status, u.charged));
            }
        }
        UserCommand::Export { .. } | UserCommand::Delete { .. } => unreachable!("handled by dispatch"),
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
        KeyCommand::Deactivate { target } => {
            let key = key_of(keys, &target).await?;
            let done = match key.state {
                KeyState::Deactivated => key,
                _ => keys.set_state(key.user_id, key.id, KeyState::Deactivated).await?,
            };
            emit(&done.id.to_string());
        }
        KeyCommand::Reactivate { target } => {
            let key = key_of(keys, &target).await?;
            let done = match key.state {
                KeyState::Active => key,
                _ => keys.set_state(key.user_id, key.id, KeyState::Active).await?,
            };
            emit(&done.id.to_string());
        }
        KeyCommand::OldPepper => {
            for k in keys.on_old_pepper().await? {
                emit(&key_line(&k));
            }
        }
        KeyCommand::SetLimits { target, per_request, per_hour, spend_limit } => {
            let key = key_of(keys, &target).await?;
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
                emit(&key_line(&k));
            }
        }
    }
    Ok(())
}

async fn credits(accounts: &AccountService, command: CreditsCommand) -> anyhow::Result<()> {
    let grant = matches!(command, CreditsCommand::Grant { .. });
    match command {
        CreditsCommand::Grant { email, credits, reason, idempotency_key }
        | CreditsCommand::Adjust { email, credits, reason, idempotency_key } => {
            let amount = parse_credits(&credits)?;
            if grant && !amount.is_positive() {
                bail!("--credits must be positive for a grant; use `credits adjust` to remove credits");
            }
            let user = accounts.user_by_email(&email).await?;
            let balance = accounts
                .change_credits(CreditChange {
                    user: user.id,
                    amount,
                    reason,
                    idempotency_key: idempotency_key.map(|k| format!("operator:{k}")),
                })
                .await?;
            emit(&balance.to_string());
        }
        CreditsCommand::Show { email } => {
            let user = accounts.user_by_email(&email).await?;
            emit(&accounts.balance(user.id).await?.to_string());
        }
    }
    Ok(())
}

/// One key, as `key list` prints it: id, prefix…last4, env, state, name, created, last used.
fn key_line(k: &KeyRecord) -> String {
    let last_used = k.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
    format!(
        "{}\t{}…{}\t{}\t{}\t{}\t{}\t{}",
        k.id,
        k.display_prefix,
        k.last4,
        k.env,
        k.state.as_str(),
        k.name,
        k.created_at,
        last_used
    )
}

/// The key a command names: by id, or the one key (not deleted) with that display prefix; an
/// ambiguous prefix is refused with every key that shares it, to choose one by id.
async fn key_of(keys: &Keys, target: &KeyTarget) -> anyhow::Result<KeyRecord> {
    if let Some(id) = &target.id {
        let id: layers_domain::KeyId = id.trim().parse().map_err(|_| anyhow::anyhow!("--id {id:?} is not a key id"))?;
        return match keys.find_by_id(id).await? {
            Some(k) if k.state != KeyState::Deleted => Ok(k),
            Some(_) => bail!("key {id} is deleted"),
            None => bail!("no key has the id {id}"),
        };
    }
    let prefix = target.prefix.as_deref().unwrap_or_default().trim();
    let mut found = keys.find_by_prefix(prefix).await?;
    found.retain(|k| k.state != KeyState::Deleted);
    match found.len() {
        0 => bail!("no key has the display prefix {prefix:?}"),
        1 => Ok(found.remove(0)),
        n => bail!(
            "{n} keys share the prefix {prefix:?}; name one with --id:\n{}",
            found.iter().map(key_line).collect::<Vec<_>>().join("\n")
        ),
    }
}

/// `--since`: an RFC 3339 time, or an age like 30m, 24h, 7d.
fn parse_since(text: &str) -> anyhow::Result<time::OffsetDateTime> {
    let now = time::OffsetDateTime::now_utc();
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = text.split_at(split);
    let n: i64 =
        n.parse().map_err(|_| anyhow::anyhow!("--since {text:?}: an RFC 3339 time or an age like 30m, 24h, 7d"))?;
    let age = match unit {
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => bail!("--since {text:?}: an RFC 3339 time or an age like 30m, 24h, 7d"),
    };
    Ok(now - age)
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
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
