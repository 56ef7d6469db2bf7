//! Creating, listing, changing and rotating API keys. Invariant: a full key exists only in the
//! value returned by [`KeyService::create`] or [`KeyService::rotate`]; what is stored is its
//! peppered hash and display parts. Every change is audited and announced to every node.

use std::sync::Arc;
use std::time::Duration;

use layers_domain::dashboard::SpendPeriod;
use layers_domain::key_format::SECRET_BYTES;
use layers_domain::{ApiKey, KeyEnv, KeyId, MicroCredits, UserId};
use layers_store::{KeyLimits, KeyRecord, KeyState, NewKey, NewSecret, Severity, Store};
use rand::TryRngCore;
use time::OffsetDateTime;

use crate::audit::Audit;
use crate::auth::cache::KeyCache;
use crate::auth::pepper::Peppers;
use crate::broadcast::{Broadcaster, Notice};
use crate::clock::Clock;
use crate::error::{ServiceError, ServiceResult};
use crate::identity::Client;

const MAX_NAME_CHARS: usize = 100;
/// How long the replaced secret keeps working after a rotation, unless the person chooses.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap a rotation may give the old secret.
pub const MAX_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// A new key (or a key's new secret): the record, and the full key to show exactly once.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub key: ApiKey,
}

#[derive(Debug)]
pub struct NewKeyRequest {
    pub user: UserId,
    pub env: KeyEnv,
    pub name: String,
    pub spend_limit: Option<MicroCredits>,
    /// How the spend limit resets.
    pub limit_period: SpendPeriod,
    pub expires_at: Option<OffsetDateTime>,
    /// When the key was made: now, unless the caller records an older key (demo data).
    pub created_at: Option<OffsetDateTime>,
}

/// What "lock down" did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockDown {
    pub keys_deactivated: usize,
}

/// A key and what it spent in its limit's current period.
#[derive(Debug)]
pub struct KeyStatus {
    pub record: KeyRecord,
    pub period_spent: MicroCredits,
    /// Spent in the current UTC day, week and month.
    pub day: MicroCredits,
    pub week: MicroCredits,
    pub month: MicroCredits,
}

#[derive(Clone, Debug)]
pub struct KeyService {
    store: Arc<dyn Store>,
    peppers: Arc<Peppers>,
    cache: Arc<KeyCache>,
    audit: Audit,
    broadcaster: Broadcaster,
    clock: Clock,
    /// The person at a browser this service acts for (their address and device go in the audit
    /// log); `None` for the operator's commands and the system.
    client: Option<Client>,
    /// The anomaly rules (rapid key creation), on serving nodes.
    anomalies: Option<Arc<crate::alerts::AlertService>>,
}

impl KeyService {
    pub fn new(
        store: Arc<dyn Store>,
        peppers: Arc<Peppers>,
        cache: Arc<KeyCache>,
        audit: Audit,
        broadcaster: Broadcaster,
        clock: Clock,
    ) -> Self {
        KeyService { store, peppers, cache, audit, broadcaster, clock, client: None, anomalies: None }
    }

    /// The same service, with the rapid-key-creation rule checked after each key created.
    pub fn with_anomalies(self, alerts: Arc<crate::alerts::AlertService>) -> KeyService {
        KeyService { anomalies: Some(alerts), ..self }
    }

    /// The same service, acting for the person at `client`: every change it makes is audited
    /// with their address and device.
    pub fn for_client(&self, client: &Client) -> KeyService {
        KeyService { client: Some(client.clone()), ..self.clone() }
    }

    async fn audit_change(&self, user: UserId, event: &str, metadata: serde_json::Value) {
        let (ip, user_agent) = self.client.as_ref().map_or((None, None), |c| (c.ip, c.user_agent.as_deref()));
        self.audit.from_client(Some(user), event, metadata, Severity::Info, ip, user_agent).await;
    }

    pub async fn create(&self, req: NewKeyRequest) -> ServiceResult<CreatedKey> {
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ServiceError::Invalid("key names are 1 to 100 printable characters"));
        }
        if req.expires_at.is_some_and(|t| t <= self.clock.now()) {
            return Err(ServiceError::Invalid("the expiry must be in the future"));
        }
        if req.created_at.is_some_and(|t| t > self.clock.now()) {
            return Err(ServiceError::Invalid("a key cannot be made in the future"));
        }
        if req.spend_limit.is_some_and(|l| !l.is_positive()) {
            return Err(ServiceError::Invalid("a spend limit must be more than zero"));
        }
        let (key, secret) = self.new_secret(req.env)?;
        let record = self
            .store
            .insert_key(&NewKey {
                id: KeyId::random(),
                user_id: req.user,
                name,
                env: req.env,
                key_hash: secret.key_hash,
                pepper_version: secret.pepper_version,
                display_prefix: secret.display_prefix,
                last4: secret.last4,
                spend_limit: req.spend_limit,
                limit_period: req.limit_period,
                expires_at: req.expires_at,
                created_at: req.created_at.unwrap_or_else(|| self.clock.now()),
            })
            .await?;
        self.audit_change(req.user,
                "key_created",
                serde_json::json!({"key_id": record.id, "env": req.env, "expires_at": req.expires_at.map(|t| t.unix_timestamp()),
                                   "spend_limit_micros": req.spend_limit.map(|m| m.0), "period": req.limit_period.as_str()}),
            )
            .await;
        if let Some(anomalies) = &self.anomalies {
            if let Err(err) = anomalies.key_created(req.user).await {
                tracing::warn!(error = %crate::error::chain(&err), user_id = %req.user, "the key creation rule could not run");
            }
        }
        Ok(CreatedKey { record, key })
    }

    /// A fresh secret of `env` from the OS, hashed with the current pepper.
    fn new_secret(&self, env: KeyEnv) -> ServiceResult<(ApiKey, NewSecret)> {
        let mut entropy = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut entropy).map_err(|_| ServiceError::Entropy)?;
        let key = ApiKey::from_entropy(env, &entropy);
        let secret = NewSecret {
            key_hash: self.peppers.hash_current(&key).to_vec(),
            pepper_version: self.peppers.current_version(),
            display_prefix: key.display_prefix().to_owned(),
            last4: key.last4().to_owned(),
        };
        Ok((key, secret))
    }

    pub async fn list(&self, user: UserId) -> ServiceResult<Vec<KeyRecord>> {
        Ok(self.store.keys_of_user(user).await?)
    }

    /// One of the user's keys; `NotFound` for another user's.
    pub async fn get(&self, user: UserId, key: KeyId) -> ServiceResult<KeyRecord> {
        self.list(user).await?.into_iter().find(|k| k.id == key).ok_or(ServiceError::NotFound("api key"))
    }

    /// Sets a key's spend caps, spend limit and its calendar period; every node applies them
    /// at once.
    pub async fn set_limits(&self, user: UserId, key: KeyId, limits: KeyLimits) -> ServiceResult<KeyRecord> {
        let positive = |m: Option<MicroCredits>| m.is_none_or(|m| m.is_positive());
        if !positive(limits.spend_limit) || !positive(limits.caps.per_request) || !positive(limits.caps.per_hour) {
            return Err(ServiceError::Invalid("limits must be more than zero (leave a field empty for none)"));
        }
        let record = self.store.set_key_limits(user, key, limits).await?;
        self.forget(&record).await;
        let micros = |m: Option<MicroCredits>| m.map(|m| m.0);
        self.audit_change(
            user,
            "key_limits_changed",
            serde_json::json!({"key_id": key, "per_request_micros": micros(limits.caps.per_request),
                                   "per_hour_micros": micros(limits.caps.per_hour),
                                   "spend_limit_micros": micros(limits.spend_limit),
                                   "period": limits.period.as_str()}),
        )
        .await;
        Ok(record)
    }

    /// Gives the key a new secret (same id, limits and history). The old secret keeps working
    /// for `overlap`, then every node refuses it.
    pub async fn rotate(&self, user: UserId, key: KeyId, overlap: Duration) -> ServiceResult<CreatedKey> {
        if overlap > MAX_OVERLAP {
            return Err(ServiceError::Invalid("the overlap is at most 30 days"));
        }
        let current = self.get(user, key).await?;
        let (full, secret) = self.new_secret(current.env)?;
        let now = self.clock.now();
        let until = now + overlap;
        let record = self.store.rotate_key(user, key, &secret, until, now).await?;
        self.forget(&current).await;
        self.forget(&record).await;
        self.audit_change(
            user,
            "key_rotated",
            serde_json::json!({"key_id": key, "old_valid_until": until.unix_timestamp(),
                                   "overlap_secs": overlap.as_secs()}),
        )
        .await;
        Ok(CreatedKey { record, key: full })
    }

    /// Ends a rotation's overlap now: the replaced secret is refused on every node within a
    /// second (for a leaked old secret).
    pub async fn retire_previous(&self, user: UserId, key: KeyId) -> ServiceResult<KeyRecord> {
        let before = self.get(user, key).await?;
        let record = self.store.retire_previous_secret(user, key).await?;
        self.forget(&before).await;
        self.audit_change(user, "key_old_secret_retired", serde_json::json!({"key_id": key})).await;
        Ok(record)
    }

    /// A key by its id, whoever owns it (operator commands).
    pub async fn find_by_id(&self, id: KeyId) -> ServiceResult<Option<KeyRecord>> {
        let Some(owner) = self.store.key_owner(id).await? else { return Ok(None) };
        Ok(self.store.keys_of_user(owner).await?.into_iter().find(|k| k.id == id))
    }

    /// The calling key as `GET /api/v1/key` shows it: its record and what it has spent in its
    /// limit's current period. `None` when the key is gone since it was authenticated.
    pub async fn status(&self, user: UserId, id: KeyId) -> ServiceResult<Option<KeyStatus>> {
        let keys = self.store.keys_of_user(user).await?;
        let Some(record) = keys.into_iter().find(|k| k.id == id) else { return Ok(None) };
        let now = self.clock.now();
        let spent = crate::alerts::period_spend(&*self.store, user, std::slice::from_ref(&record), now)
            .await?
            .get(&id)
            .copied()
            .unwrap_or(MicroCredits::ZERO);
        // The UTC day, week and month so far (the month starts no later than the week).
        let starts = [SpendPeriod::Day, SpendPeriod::Week, SpendPeriod::Month].map(|p| p.start_day(now).unwrap_or(0));
        let first = starts.iter().copied().min().unwrap_or(0);
        let days = self.store.key_spend_days(user, first).await?;
        let since = |from: i64| days.iter().filter(|(k, day, _)| *k == id && *day >= from).map(|(_, _, s)| *s).sum();
        let [day, week, month] = starts.map(since);
        Ok(Some(KeyStatus { record, period_spent: spent, day, week, month }))
    }

    /// Keys not yet re-issued since the pepper was rotated (their hash uses an older version;
    /// they keep working until the old pepper is removed from `keys.old_peppers`).
    pub async fn on_old_pepper(&self) -> ServiceResult<Vec<KeyRecord>> {
        Ok(self.store.keys_on_old_pepper(self.peppers.current_version()).await?)
    }

    /// Keys whose display prefix is `prefix` (incident response).
    pub async fn find_by_prefix(&self, prefix: &str) -> ServiceResult<Vec<KeyRecord>> {
        Ok(self.store.keys_by_prefix(prefix).await?)
    }

    /// Changes a key's state. This node's cache drops it at once; other nodes follow the feed.
    pub async fn set_state(&self, user: UserId, key: KeyId, state: KeyState) -> ServiceResult<KeyRecord> {
        let record = self.store.set_key_state(user, key, state).await?;
        self.forget(&record).await;
        let event = match state {
            KeyState::Active => "key_reactivated",
            KeyState::Deactivated => "key_deactivated",
            KeyState::Deleted => "key_deleted",
        };
        self.audit_change(user, event, serde_json::json!({"key_id": key})).await;
        Ok(record)
    }

    /// Deactivates every active key of the account (the incident panel).
    pub async fn deactivate_all(&self, user: UserId) -> ServiceResult<LockDown> {
        let mut done = LockDown::default();
        for key in self.list(user).await?.into_iter().filter(|k| k.state == KeyState::Active) {
            self.set_state(user, key.id, KeyState::Deactivated).await?;
            done.keys_deactivated += 1;
        }
        Ok(done)
    }

    /// Drops every secret of the key from this node's cache and tells the other nodes now
    /// (the database feed is the backstop).
    async fn forget(&self, record: &KeyRecord) {
        let hashes = std::iter::once(&record.key_hash).chain(record.previous.as_ref().map(|p| &p.key_hash));
        for hash in hashes {
            self.cache.remove(hash);
            self.broadcaster.publish(Notice::Key(hash.clone())).await;
        }
    }
}
