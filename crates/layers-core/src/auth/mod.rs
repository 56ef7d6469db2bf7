//! Authentication of API keys (SPEC §3). Invariant: a malformed key is rejected before any
//! lookup; a key seen recently is answered from memory; the database is asked only on a miss,
//! and what it returns is compared in constant time.

pub mod cache;
pub mod pepper;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use layers_domain::dashboard::SpendPeriod;
use layers_domain::{ApiKey, KeyEnv, KeyId, MicroCredits, Tier, UserId};
use layers_store::{CapOverrides, KeyAuthRecord, KeyState, RateOverrides, Store, StoreError, UserStatus};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use self::cache::{Cached, KeyCache};
use self::pepper::{KeyHash, Peppers};
use crate::clock::Clock;
use crate::last_used::LastUsed;

/// Who is calling: an authenticated, active key and its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: KeyId,
    pub user_id: UserId,
    pub env: KeyEnv,
    pub tier: Tier,
    /// The key's spend limit, per `limit_period`.
    pub spend_limit: Option<MicroCredits>,
    pub limit_period: SpendPeriod,
    pub key_caps: CapOverrides,
    pub account_caps: CapOverrides,
    pub account_rate: RateOverrides,
}

/// Why a request is not authenticated. The `Display` texts are the exact client messages.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authorization header")]
    Missing,
    #[error("Invalid API key format")]
    Format,
    #[error("Invalid API key")]
    Invalid,
    #[error("API key is deactivated")]
    Deactivated,
    #[error("API key has expired")]
    Expired,
    #[error("Account is suspended")]
    Suspended,
    #[error("authentication is unavailable")]
    Unavailable(#[source] StoreError),
    /// Not known in memory, and lookups are paused for the caller's network (it is blocked).
    #[error("Invalid API key")]
    Unverified,
}

impl AuthError {
    /// A failure that counts toward blocking the client's IP (a guessed or broken key).
    pub fn is_failed_credential(&self) -> Option<&'static str> {
        match self {
            AuthError::Format => Some("format"),
            AuthError::Invalid => Some("invalid"),
            AuthError::Deactivated => Some("deactivated"),
            AuthError::Expired => Some("expired"),
            // No credential at all is a misconfigured client, not a guess: counting it would let
            // one such client behind a shared address block everyone there.
            AuthError::Missing | AuthError::Suspended | AuthError::Unavailable(_) | AuthError::Unverified => None,
        }
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub format_rejections: AtomicU64,
    pub cache_hits: AtomicU64,
    pub db_lookups: AtomicU64,
}

#[derive(Debug)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    peppers: Arc<Peppers>,
    cache: Arc<KeyCache>,
    last_used: Arc<LastUsed>,
    stats: AuthStats,
    clock: Clock,
}

impl Authenticator {
    pub fn new(
        store: Arc<dyn Store>,
        peppers: Arc<Peppers>,
        cache: Arc<KeyCache>,
        last_used: Arc<LastUsed>,
        clock: Clock,
    ) -> Self {
        Authenticator { store, peppers, cache, last_used, stats: AuthStats::default(), clock }
    }

    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Authenticates the value of an `Authorization` header (or `x-api-key`, passed as is).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate_with(header, |_| true).await
    }

    /// Like [`Authenticator::authenticate`], but asks `may_look_up` before going to the
    /// database (telling it whether the key was valid when this node last saw it); when it
    /// says no, a key not known in memory is [`AuthError::Unverified`].
    pub async fn authenticate_with(
        &self,
        header: Option<&str>,
        may_look_up: impl FnOnce(bool) -> bool,
    ) -> Result<Principal, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let token = bearer_token(raw);
        let key = ApiKey::parse(token).map_err(|_| {
            self.stats.format_rejections.fetch_add(1, Ordering::Relaxed);
            AuthError::Format
        })?;
        let now = Instant::now();
        let current = self.peppers.hash_current(&key);
        if let Some(answer) = self.cached(&current, now) {
            return answer;
        }
        // Keys created under an older pepper are cached under their own hash.
        let older: Vec<(i32, KeyHash)> =
            self.peppers.older_versions().filter_map(|v| Some((v, self.peppers.hash(v, &key)?))).collect();
        for (_, hash) in &older {
            if let Some(answer) = self.cached(hash, now) {
                return answer;
            }
        }
        if !may_look_up(self.cache.was_valid(&current)) {
            return Err(AuthError::Unverified);
        }
        let epoch = self.cache.epoch();
        self.stats.db_lookups.fetch_add(1, Ordering::Relaxed);
        let candidates: Vec<(i32, KeyHash)> =
            std::iter::once((self.peppers.current_version(), current)).chain(older).collect();
        for (version, hash) in &candidates {
            let found = match self.store.key_for_auth(hash).await {
                Ok(found) => found,
                Err(err) => {
                    // The database cannot be asked, so nobody can revoke through it either:
                    // a key known a moment ago is still served, anything else is unavailable.
                    let known = candidates.iter().find_map(|(_, h)| Some((*h, self.cache.get_unconfirmed(h, now)?)));
                    return match known {
                        Some((hash, record)) => self.accept(&record, &hash, now),
                        None => Err(AuthError::Unavailable(err)),
                    };
                }
            };
            if let Some(record) = found.filter(|r| matches_hash(r, *version, hash)) {
                let record = Arc::new(record);
                self.cache.insert(*hash, Cached::Found(record.clone()), now, epoch);
                return self.accept(&record, hash, now);
            }
        }
        self.cache.insert(current, Cached::Missing, now, epoch);
        Err(AuthError::Invalid)
    }

    fn cached(&self, hash: &KeyHash, now: Instant) -> Option<Result<Principal, AuthError>> {
        let hit = self.cache.get(hash, now)?;
        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(match hit {
            Cached::Found(record) => self.accept(&record, hash, now),
            Cached::Missing => Err(AuthError::Invalid),
        })
    }

    fn accept(&self, record: &KeyAuthRecord, hash: &KeyHash, now: Instant) -> Result<Principal, AuthError> {
        let principal = judge(record, hash, self.clock.now())?;
        self.last_used.note(principal.key_id, now);
        Ok(principal)
    }
}

/// Takes the token from `Bearer <token>` (scheme case-insensitive), or the whole value.
/// The key in an `Authorization` value (`Bearer <key>`, any case) or the value itself.
pub fn bearer_token(raw: &str) -> &str {
    let raw = raw.trim();
    match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => raw,
    }
}

/// Whether the record is the key of `hash`: by its current secret, or by the secret a
/// rotation replaced (still recorded; whether it is still valid is [`judge`]'s to say).
fn matches_hash(r: &KeyAuthRecord, version: i32, hash: &KeyHash) -> bool {
    let current = r.key.pepper_version == version && bool::from(r.key.key_hash.as_slice().ct_eq(hash.as_slice()));
    let previous = r
        .key
        .previous
        .as_ref()
        .is_some_and(|p| p.pepper_version == version && bool::from(p.key_hash.as_slice().ct_eq(hash.as_slice())));
    current | previous
}

/// Whether the key of `hash` may be used at `now`. A secret replaced by a rotation is the key
/// until its overlap ends, then no key at all.
fn judge(r: &KeyAuthRecord, hash: &KeyHash, now: time::OffsetDateTime) -> Result<Principal, AuthError> {
    let by_current = bool::from(r.key.key_hash.as_slice().ct_eq(hash.as_slice()));
    if !by_current {
        match &r.key.previous {
            Some(p) if bool::from(p.key_hash.as_slice().ct_eq(hash.as_slice())) && now < p.valid_until => {}
            _ => return Err(AuthError::Invalid),
        }
    }
    match r.key.state {
        KeyState::Active => {}
        KeyState::Deactivated => return Err(AuthError::Deactivated),
        KeyState::Deleted => return Err(AuthError::Invalid),
    }
    if r.key.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(AuthError::Expired);
    }
    if r.user_status == UserStatus::Suspended {
        return Err(AuthError::Suspended);
    }
    Ok(Principal {
        key_id: r.key.id,
        user_id: r.key.user_id,
        env: r.key.env,
        tier: r.tier,
        spend_limit: r.key.spend_limit,
        limit_period: r.key.limit_period,
        key_caps: r.key.caps,
        account_caps: r.account_caps,
        account_rate: r.account_rate,
    })
}

/// Default TTL of cache entries; revocations arrive faster through the invalidation feed.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
