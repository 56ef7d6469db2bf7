//! Decoding PostgreSQL rows into records. Invariant: a value that does not parse is reported as
//! `Corrupt` with its column, never defaulted.

use layers_domain::{KeyId, MicroCredits, Usage, UserId};
use sqlx::postgres::PgRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::{StoreError, StoreResult};
use crate::records::*;

fn parsed<T>(row: &PgRow, col: &'static str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
    let s: String = row.try_get(col)?;
    parse(&s).ok_or(StoreError::Corrupt { column: col })
}

fn u32_col(row: &PgRow, col: &'static str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt { column: col })
}

fn ip(row: &PgRow, col: &'static str) -> StoreResult<Option<std::net::IpAddr>> {
    row.try_get::<Option<String>, _>(col)?
        .map(|s| {
            // inet::text renders a host address as `1.2.3.4/32`.
            let host = s.split('/').next().unwrap_or_default();
            host.parse().map_err(|_| StoreError::Corrupt { column: col })
        })
        .transpose()
}

pub(crate) fn user(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.try_get("id")?),
        email: row.try_get("email")?,
        tier: parsed(row, "tier", |s| s.parse().ok())?,
        status: parsed(row, "status", UserStatus::from_db)?,
        caps: caps(row, "max_credits_per_request_micros", "max_credits_per_hour_micros")?,
        rate: rate(row, "requests_per_minute", "tokens_per_minute")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn rate(row: &PgRow, rpm: &'static str, tpm: &'static str) -> StoreResult<RateOverrides> {
    RateOverrides::from_columns(row.try_get(rpm)?, row.try_get(tpm)?)
}

pub(crate) fn caps(row: &PgRow, per_request: &'static str, per_hour: &'static str) -> StoreResult<CapOverrides> {
    Ok(CapOverrides {
        per_request: row.try_get::<Option<i64>, _>(per_request)?.map(MicroCredits),
        per_hour: row.try_get::<Option<i64>, _>(per_hour)?.map(MicroCredits),
    })
}

pub(crate) fn key(row: &PgRow) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: KeyId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
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
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        previous: retired(row)?,
        rotated_at: row.try_get("rotated_at")?,
    })
}

fn retired(row: &PgRow) -> StoreResult<Option<RetiredSecret>> {
    let Some(key_hash) = row.try_get::<Option<Vec<u8>>, _>("previous_hash")? else { return Ok(None) };
    let corrupt = |column| StoreError::Corrupt { column };
    Ok(Some(RetiredSecret {
        key_hash,
        pepper_version: row
            .try_get::<Option<i32>, _>("previous_pepper_version")?
            .ok_or(corrupt("previous_pepper_version"))?,
        display_prefix: row.try_get::<Option<String>, _>("previous_prefix")?.ok_or(corrupt("previous_prefix"))?,
        last4: row.try_get::<Option<String>, _>("previous_last4")?.ok_or(corrupt("previous_last4"))?,
        valid_until: row
            .try_get::<Option<OffsetDateTime>, _>("previous_valid_until")?
            .ok_or(corrupt("previous_valid_until"))?,
    }))
}

pub(crate) fn expiring(row: &PgRow) -> StoreResult<ExpiringKey> {
    Ok(ExpiringKey {
        id: KeyId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        name: row.try_get("name")?,
        display_prefix: row.try_get("display_prefix")?,
        last4: row.try_get("last4")?,
        expires_at: row.try_get("expires_at")?,
        reminded: row.try_get("expiry_reminded")?,
    })
}

pub(crate) fn transaction(row: &PgRow) -> StoreResult<CreditTransaction> {
    Ok(CreditTransaction {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        kind: parsed(row, "kind", TransactionKind::from_db)?,
        amount: MicroCredits(row.try_get("amount_micros")?),
        balance_after: MicroCredits(row.try_get("balance_after_micros")?),
        idempotency_key: row.try_get("idempotency_key")?,
        reason: row.try_get("reason")?,
        request_id: row.try_get("request_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn usage(row: &PgRow) -> StoreResult<UsageRecord> {
    Ok(UsageRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        user_id: UserId(row.try_get("user_id")?),
        key_id: row.try_get::<Option<uuid::Uuid>, _>("key_id")?.map(KeyId),
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
        status: u16::try_from(row.try_get::<i32, _>("status")?)
            .map_err(|_| StoreError::Corrupt { column: "status" })?,
        error_code: row.try_get("error_code")?,
        streamed: row.try_get("streamed")?,
        usage_estimated: row.try_get("usage_estimated")?,
        created_at: row.try_get("created_at")?,
        app_title: row.try_get("app_title")?,
        app_origin: row.try_get("app_origin")?,
    })
}

pub(crate) fn audit(row: &PgRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        user_id: row.try_get::<Option<uuid::Uuid>, _>("user_id")?.map(UserId),
        event_type: row.try_get("event_type")?,
        ip_address: ip(row, "ip_address")?,
        user_agent: row.try_get("user_agent")?,
        metadata: row.try_get("metadata")?,
        severity: parsed(row, "severity", Severity::from_db)?,
    })
}

pub(crate) fn session(row: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        token_hash: row.try_get("token_hash")?,
        created_at: row.try_get("created_at")?,
        authenticated_at: row.try_get("authenticated_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        ip_address: ip(row, "ip_address")?,
        user_agent: row.try_get("user_agent")?,
    })
}

pub(crate) fn cache_event(row: &PgRow) -> StoreResult<CacheEvent> {
    Ok(CacheEvent {
        id: row.try_get("id")?,
        scope: parsed(row, "scope", CacheScope::from_db)?,
        key_hash: row.try_get("key_hash")?,
        user_id: UserId(row.try_get("user_id")?),
        created_at: row.try_get("created_at")?,
        reclaim_epoch: row.try_get("reclaim_epoch")?,
    })
}

pub(crate) fn lease(row: &PgRow) -> StoreResult<LeaseRecord> {
    Ok(LeaseRecord {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        key_id: KeyId(row.try_get("key_id")?),
        node_id: row.try_get("node_id")?,
        amount: MicroCredits(row.try_get("amount_micros")?),
        state: parsed(row, "state", LeaseState::from_db)?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(crate) fn credentials(row: &PgRow) -> StoreResult<Credentials> {
    Ok(Credentials {
        user_id: UserId(row.try_get("id")?),
        status: parsed(row, "status", UserStatus::from_db)?,
        password_hash: row.try_get("password_hash")?,
        email_verified_at: row.try_get("email_verified_at")?,
    })
}

pub(crate) fn email_token(row: &PgRow) -> StoreResult<EmailToken> {
    Ok(EmailToken {
        token_hash: row.try_get("token_hash")?,
        user_id: UserId(row.try_get("user_id")?),
        purpose: parsed(row, "purpose", EmailPurpose::from_db)?,
        new_email: row.try_get("new_email")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
