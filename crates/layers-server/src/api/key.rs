//! `GET /api/v1/key`: the calling key as OpenRouter's endpoint of that name describes it (label,
//! limit, usage, rate limit), plus whether it is a test key. Amounts are US$ as JSON numbers, as
//! OpenRouter's clients read them; `usage_credits` is the same lifetime spend as an exact
//! decimal string of credits.

use axum::extract::State;
use axum::Json;
use layers_core::codes::ErrorCode;
use layers_domain::dashboard::SpendPeriod;
use layers_domain::{KeyEnv, MicroCredits, Tier};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::state::AppState;

pub async fn current_key(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let status = state
        .core
        .keys
        .status(p.user_id, p.key_id)
        .await
        .map_err(|e| ApiError::Internal { detail: crate::error::error_chain(&e) })?
        .ok_or_else(|| ApiError::NotFound {
            message: "This key no longer exists".into(),
            code: ErrorCode::InvalidApiKey,
        })?;
    let k = &status.record;
    let usd = |m: MicroCredits| m.usd_number();
    let remaining = k.spend_limit.map(|limit| usd(limit.saturating_sub(status.period_spent).max(MicroCredits::ZERO)));
    let reset = match k.limit_period {
        SpendPeriod::Total => None,
        SpendPeriod::Day => Some("daily"),
        SpendPeriod::Week => Some("weekly"),
        SpendPeriod::Month => Some("monthly"),
    };
    Ok(Json(json!({"data": {
        "label": k.name,
        "limit": k.spend_limit.map(usd),
        "limit_remaining": remaining,
        "limit_reset": reset,
        "usage": usd(k.spent),
        "usage_daily": usd(status.day),
        "usage_weekly": usd(status.week),
        "usage_monthly": usd(status.month),
        "usage_credits": k.spent.credits_text(),
        "is_free_tier": p.tier == Tier::Free,
        "is_provisioning_key": false,
        "include_byok_in_limit": false,
        "is_test": p.env == KeyEnv::Test,
        "rate_limit": {"requests": state.core.limiter.requests_per_minute(&p), "interval": "1m"},
        "expires_at": k.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
    }})))
}
