//! Creating, listing and changing API keys. Invariant: the full key exists only in the value
//! returned by [`KeyService::create`]; what is stored is its peppered hash and display parts.

use std::sync::Arc;

use layers_domain::key_format::SECRET_BYTES;
use layers_domain::{ApiKey, KeyEnv, KeyId, MicroCredits, UserId};
use layers_store::{CapOverrides, KeyRecord, KeyState, NewKey, Store};
use rand::TryRngCore;
use time::OffsetDateTime;

use crate::audit::Audit;
use crate::auth::cache::KeyCache;
use crate::auth::pepper::Peppers;
use crate::broadcast::{Broadcaster, Notice};
use crate::error::{ServiceError, ServiceResult};

const MAX_NAME_CHARS: usize = 100;

/// A new key: the record, and the full key to show exactly once.
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
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct KeyService {
    store: Arc<dyn Store>,
    peppers: Arc<Peppers>,
    cache: Arc<KeyCache>,
    audit: Audit,
    broadcaster: Broadcaster,
}

impl KeyService {
    pub fn new(
        store: Arc<dyn Store>,
        peppers: Arc<Peppers>,
        cache: Arc<KeyCache>,
        audit: Audit,
        broadcaster: Broadcaster,
    ) -> Self {
        KeyService { store, peppers, cache, audit, broadcaster }
    }

    pub async fn create(&self, req: NewKeyRequest) -> ServiceResult<CreatedKey> {
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ServiceError::Invalid("key names are 1 to 100 printable characters"));
        }
        if req.expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
            return Err(ServiceError::Invalid("the expiry must be in the future"));
        }
        let mut entropy = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut entropy).map_err(|_| ServiceError::Entropy)?;
        let key = ApiKey::from_entropy(req.env, &entropy);
        let version = self.peppers.current_version();
        let record = self
            .store
            .insert_key(&NewKey {
                id: KeyId::random(),
                user_id: req.user,
                name,
                env: req.env,
                key_hash: self.peppers.hash_current(&key).to_vec(),
                pepper_version: version,
                display_prefix: key.display_prefix().to_owned(),
                last4: key.last4().to_owned(),
                spend_limit: req.spend_limit,
                expires_at: req.expires_at,
                created_at: OffsetDateTime::now_utc(),
            })
            .await?;
        self.audit.info(Some(req.user), "key_created", serde_json::json!({"key_id": record.id, "env": req.env})).await;
        Ok(CreatedKey { record, key })
    }

    pub async fn list(&self, user: UserId) -> ServiceResult<Vec<KeyRecord>> {
        Ok(self.store.keys_of_user(user).await?)
    }

    /// Sets a key's spend caps and lifetime spend limit; every node applies them at once.
    pub async fn set_limits(
        &self,
        user: UserId,
        key: KeyId,
        caps: CapOverrides,
        spend_limit: Option<MicroCredits>,
    ) -> ServiceResult<KeyRecord> {
        let record = self.store.set_key_limits(user, key, caps, spend_limit).await?;
        self.cache.remove(&record.key_hash);
        self.broadcaster.publish(Notice::Key(record.key_hash.clone())).await;
        self.audit
            .info(
                Some(user),
                "key_limits_changed",
                serde_json::json!({"key_id": key, "per_request_micros": caps.per_request.map(|m| m.0),
                                   "per_hour_micros": caps.per_hour.map(|m| m.0),
                                   "spend_limit_micros": spend_limit.map(|m| m.0)}),
            )
            .await;
        Ok(record)
    }

    /// Keys whose display prefix is `prefix` (incident response).
    pub async fn find_by_prefix(&self, prefix: &str) -> ServiceResult<Vec<KeyRecord>> {
        Ok(self.store.keys_by_prefix(prefix).await?)
    }

    /// Changes a key's state. This node's cache drops it at once; other nodes follow the feed.
    pub async fn set_state(&self, user: UserId, key: KeyId, state: KeyState) -> ServiceResult<KeyRecord> {
        let record = self.store.set_key_state(user, key, state).await?;
        self.cache.remove(&record.key_hash);
        // Every node drops it now; the database feed is the backstop.
        self.broadcaster.publish(Notice::Key(record.key_hash.clone())).await;
        let event = match state {
            KeyState::Active => "key_reactivated",
            KeyState::Deactivated => "key_deactivated",
            KeyState::Deleted => "key_deleted",
        };
        self.audit.info(Some(user), event, serde_json::json!({"key_id": key})).await;
        Ok(record)
    }
}
