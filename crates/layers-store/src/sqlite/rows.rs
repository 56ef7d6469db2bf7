//! Decoding SQLite rows into records. Invariant: a value that does not parse is reported as
//! `Corrupt` with its column, never defaulted.

use layers_domain::{KeyId, MicroCredits, Usage, UserId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::records::*;

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(ms)
}

fn uuid(row: &SqliteRow, col: &'static str) -> StoreResult<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::parse_str(&s).map_err(|_| StoreError::Corrupt { column: col })
}

fn opt_uuid(row: &SqliteRow, col: &'static str) -> StoreResult<Option<Uuid>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|_| StoreError::Corrupt { column: col })).transpose()
}

fn time(row: &SqliteRow, col: &'static str) -> StoreResult<OffsetDateTime> {
    Ok(from_ms(row.try_get(col)?))
}

fn opt_time(row: &SqliteRow, col: &'static str) -> StoreResult<Option<OffsetDateTime>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_ms))
}

fn parsed<T>(row: &SqliteRow, col: &'static str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
    let s: String = row.try_get(col)?;
    parse(&s).ok_or(StoreError::Corrupt { column: col })
}

fn u32_col(row: &SqliteRow, col: &'static str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt { column: col })
}

pub(crate) fn user(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(uuid(row, "id")?),
        email: row.try_get("email")?,
        tier: parsed(row, "tier", |s| s.parse().ok())?,
        status: parsed(row, "status", UserStatus::from_db)?,
        caps: caps(row, "max_credits_per_request_micros", "max_credits_per_hour_micros")?,
        rate: rate(row, "requests_per_minute", "tokens_per_minute")?,
        created_at: time(row, "created_at")?,
    })
}

pub(crate) fn rate(row: &SqliteRow, rpm: &'static str, tpm: &'static str) -> StoreResult<RateOverrides> {
    RateOverrides::from_columns(row.try_get(rpm)?, row.try_get(tpm)?)
}

pub(crate) fn caps(row: &SqliteRow, per_request: &'static str, per_hour: &'static str) -> StoreResult<CapOverrides> {
    Ok(CapOverrides {
        per_request: row.try_get::<Option<i64>, _>(per_request)?.map(MicroCredits),
        per_hour: row.try_get::<Option<i64>, _>(per_hour)?.map(MicroCredits),
    })
}

pub(crate) fn key(row: &SqliteRow) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: KeyId(uuid(row, "id")?),
        user_id: UserId(uuid(row, "user_id")?),
        name: row.try_get("name")?,
        env: parsed(row, "env", |s| s.parse().ok())?,
        key_hash: row.try_get("key_hash")?,
        pepper_version: row.try_get("pepper_version")?,
        display_prefix: row.try_get("display_prefix")?,
        last4: row.try_get("last4")?,
        state: parsed(row, "state", KeyState::from_db)?,
        spend_limit: row.try_get::<Option<i64>, _>("spend_limit_micros")?.map(MicroCredits),
        limit_period: parsed(row, "limit_period", SpendPeriod::parse)?,
        caps: caps(row, "max_credits_per_request_micros", "max_credits_per_hour_micros")?,
        spent: MicroCredits(row.try_get("spent_micros")?),
        expires_at: opt_time(row, "expires_at")?,
        created_at: time(row, "created_at")?,
        last_used_at: opt_time(row, "last_used_at")?,
        previous: retired(row)?,
        rotated_at: opt_time(row, "rotated_at")?,
    })
}

fn retired(row: &SqliteRow) -> StoreResult<Option<RetiredSecret>> {
    let Some(key_hash) = row.try_get::<Option<Vec<u8>>, _>("previous_hash")? else { return Ok(None) };
    let corrupt = |column| StoreError::Corrupt { column };
    Ok(Some(RetiredSecret {
        key_hash,
        pepper_version: row
            .try_get::<Option<i32>, _>("previous_pepper_version")?
            .ok_or(corrupt("previous_pepper_version"))?,
        display_prefix: row.try_get::<Option<String>, _>("previous_prefix")?.ok_or(corrupt("previous_prefix"))?,
        last4: row.try_get::<Option<String>, _>("previous_last4")?.ok_or(corrupt("previous_last4"))?,
        valid_until: opt_time(row, "previous_valid_until")?.ok_or(corrupt("previous_valid_until"))?,
    }))
}

pub(crate) fn expiring(row: &SqliteRow) -> StoreResult<ExpiringKey> {
    Ok(ExpiringKey {
        id: KeyId(uuid(row, "id")?),
        user_id: UserId(uuid(row, "user_id")?),
        name: row.try_get("name")?,
        display_prefix: row.try_get("display_prefix")?,
        last4: row.try_get("last4")?,
        expires_at: time(row, "expires_at")?,
        reminded: row.try_get("expiry_reminded")?,
    })
}

pub(crate) fn transaction(row: &SqliteRow) -> StoreResult<CreditTransaction> {
    Ok(CreditTransaction {
        id: uuid(row, "id")?,
        user_id: UserId(uuid(row, "user_id")?),
        kind: parsed(row, "kind", TransactionKind::from_db)?,
        amount: MicroCredits(row.try_get("amount_micros")?),
        balance_after: MicroCredits(row.try_get("balance_after_micros")?),
        idempotency_key: row.try_get("idempotency_key")?,
        reason: row.try_get("reason")?,
        request_id: row.try_get("request_id")?,
        created_at: time(row, "created_at")?,
    })
}

pub(crate) fn usage(row: &SqliteRow) -> StoreResult<UsageRecord> {
    Ok(UsageRecord {
        id: uuid(row, "id")?,
        request_id: row.try_get("request_id")?,
        user_id: UserId(uuid(row, "user_id")?),
        key_id: opt_uuid(row, "key_id")?.map(KeyId),
        model: row.try_get("model")?,
        provider: row.try_get("provider")?,
        upstream_model: row.try_get("upstream_model")?,
        endpoint: row.try_get("endpoint")?,
        usage: Usage {
            prompt_tokens: u32_col(row, "prompt_tokens")?,
            completion_tokens: u32_col(row, "completion_tokens")?,
            cached_tokens: u32_col(row, "cached_tokens")?,
            cache_write_tokens: u32_col(row, "cache_write_tokens")?,
            reasoning_tokens: u32_col(row, "reasoning_tokens")?,
            images: u32_col(row, "images")?,
        },
        cost: MicroCredits(row.try_get("cost_micros")?),
        charged: MicroCredits(row.try_get("charged_micros")?),
        held: MicroCredits(row.try_get("held_micros")?),
        shortfall: MicroCredits(row.try_get("shortfall_micros")?),
        fees: MicroCredits(row.try_get("fees_micros")?),
        rates: crate::settlement::rates(
            row.try_get("rate_input")?,
            row.try_get("rate_output")?,
            row.try_get("rate_cached_input")?,
            row.try_get("rate_cache_write")?,
            row.try_get("rate_image")?,
        ),
        latency_ms: row.try_get("latency_ms")?,
        status: u16::try_from(row.try_get::<i64, _>("status")?)
            .map_err(|_| StoreError::Corrupt { column: "status" })?,
        error_code: row.try_get("error_code")?,
        streamed: row.try_get("streamed")?,
        usage_estimated: row.try_get("usage_estimated")?,
        created_at: time(row, "created_at")?,
        app_title: row.try_get("app_title")?,
        app_origin: row.try_get("app_origin")?,
    })
}

pub(crate) fn audit(row: &SqliteRow) -> StoreResult<AuditEvent> {
    let metadata: String = row.try_get("metadata")?;
    Ok(AuditEvent {
        id: uuid(row, "id")?,
        created_at: time(row, "created_at")?,
        user_id: opt_uuid(row, "user_id")?.map(UserId),
        event_type: row.try_get("event_type")?,
        ip_address: row
            .try_get::<Option<String>, _>("ip_address")?
            .map(|s| s.parse().map_err(|_| StoreError::Corrupt { column: "ip_address" }))
            .transpose()?,
        user_agent: row.try_get("user_agent")?,
        metadata: serde_json::from_str(&metadata).map_err(|_| StoreError::Corrupt { column: "metadata" })?,
        severity: parsed(row, "severity", Severity::from_db)?,
    })
}

pub(crate) fn session(row: &SqliteRow) -> StoreResult<Session> {
    Ok(Session {
        id: uuid(row, "id")?,
        user_id: UserId(uuid(row, "user_id")?),
        token_hash: row.try_get("token_hash")?,
        created_at: time(row, "created_at")?,
        authenticated_at: time(row, "authenticated_at")?,
        last_seen_at: time(row, "last_seen_at")?,
        expires_at: time(row, "expires_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
        ip_address: row
            .try_get::<Option<String>, _>("ip_address")?
            .map(|s| s.parse().map_err(|_| StoreError::Corrupt { column: "ip_address" }))
            .transpose()?,
        user_agent: row.try_get("user_agent")?,
    })
}

pub(crate) fn cache_event(row: &SqliteRow) -> StoreResult<CacheEvent> {
    Ok(CacheEvent {
        id: row.try_get("id")?,
        scope: parsed(row, "scope", CacheScope::from_db)?,
        key_hash: row.try_get("key_hash")?,
        user_id: UserId(uuid(row, "user_id")?),
        created_at: time(row, "created_at")?,
        reclaim_epoch: row.try_get("reclaim_epoch")?,
    })
}

pub(crate) fn lease(row: &SqliteRow) -> StoreResult<LeaseRecord> {
    Ok(LeaseRecord {
        id: uuid(row, "id")?,
        user_id: UserId(uuid(row, "user_id")?),
        key_id: KeyId(uuid(row, "key_id")?),
        node_id: uuid(row, "node_id")?,
        amount: MicroCredits(row.try_get("amount_micros")?),
        state: parsed(row, "state", LeaseState::from_db)?,
        expires_at: time(row, "expires_at")?,
    })
}

pub(crate) fn credentials(row: &SqliteRow) -> StoreResult<Credentials> {
    Ok(Credentials {
        user_id: UserId(uuid(row, "id")?),
        status: parsed(row, "status", UserStatus::from_db)?,
        password_hash: row.try_get("password_hash")?,
        email_verified_at: opt_time(row, "email_verified_at")?,
    })
}

pub(crate) fn email_token(row: &SqliteRow) -> StoreResult<EmailToken> {
    Ok(EmailToken {
        token_hash: row.try_get("token_hash")?,
        user_id: UserId(uuid(row, "user_id")?),
        purpose: parsed(row, "purpose", EmailPurpose::from_db)?,
        new_email: row.try_get("new_email")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}
