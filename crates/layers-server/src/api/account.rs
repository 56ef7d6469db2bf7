//! `GET /api/v1/pricing` (public), `GET /api/v1/balance` and `GET /api/v1/usage` (with an API
//! key): the price list in credits, the account's balance and tier, its recent usage.
//! Invariant: money leaves as exact decimal strings of credits, never floats.

use axum::extract::State;
use axum::Json;
use http::Uri;
use layers_core::accounts::UsageCursor;
use layers_core::codes::ErrorCode;
use layers_domain::MicroCredits;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::state::AppState;

/// Most usage rows per page.
const MAX_PAGE: u32 = 200;

pub async fn pricing(State(state): State<AppState>) -> Json<Value> {
    let per_mtok = |r: layers_domain::Rate| r.credits_per_mtok_text();
    let data: Vec<Value> = state
        .core
        .catalogue
        .served()
        .map(|m| {
            let p = &m.price;
            json!({
                "model": m.name(),
                "kind": format!("{:?}", m.spec.kind).to_lowercase(),
                "credits_per_million_input_tokens": per_mtok(p.input),
                "credits_per_million_output_tokens": per_mtok(p.output),
                "credits_per_million_cached_input_tokens": per_mtok(p.cached_input),
                "credits_per_image": credits(p.per_image),
                "context_window": m.spec.context_window,
                "max_output_tokens": m.spec.max_output_tokens,
            })
        })
        .collect();
    Json(json!({"object": "list", "currency": "credits", "usd_per_credit": "0.01", "data": data}))
}

pub async fn balance(State(state): State<AppState>, Authenticated(p): Authenticated) -> Result<Json<Value>, ApiError> {
    let balance = state.core.accounts.balance(p.user_id).await.map_err(service)?;
    Ok(Json(json!({
        "object": "balance",
        "credits": credits(balance),
        "usd": balance.usd_text(),
        "tier": p.tier.as_str(),
        "key_environment": if p.env == layers_domain::KeyEnv::Live { "live" } else { "test" },
    })))
}

pub async fn usage(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (limit, before) = page(uri.query().unwrap_or(""))?;
    // One more than asked tells whether another page exists.
    let mut rows = state.core.accounts.recent_usage(p.user_id, limit + 1, before).await.map_err(service)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| has_more).map(|r| cursor_text(&UsageCursor::after(r)));
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "request_id": r.request_id,
                "model": r.model,
                "provider": r.provider,
                "endpoint": r.endpoint,
                "status": r.status,
                "error_code": r.error_code,
                "streamed": r.streamed,
                "prompt_tokens": r.usage.prompt_tokens,
                "completion_tokens": r.usage.completion_tokens,
                "cached_tokens": r.usage.cached_tokens,
                "reasoning_tokens": r.usage.reasoning_tokens,
                "images": r.usage.images,
                "usage_estimated": r.usage_estimated,
                "credits": credits(r.charged),
                "latency_ms": r.latency_ms,
                "created_at": r.created_at.format(&Rfc3339).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "has_more": has_more, "next_cursor": next})))
}

/// `GET /api/v1/generation?id=<request id>`: one request of the calling key's account, with
/// exactly what it was charged (the same figure as its ledger debit), its tokens, latency and
/// provider. Streams report their charge here once they have ended.
pub async fn generation(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let id = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))
        .filter(|id| !id.is_empty() && id.len() <= 200)
        .ok_or_else(|| ApiError::Invalid {
            message: "`id` (a request id) is required".into(),
            param: Some("id".into()),
            code: ErrorCode::InvalidValue,
        })?;
    // The id of the answer (`gen-…`, `resp_…`, `msg_…`, as OpenRouter's clients pass it) or the
    // request id itself.
    let mut found = state.core.accounts.generation(p.user_id, id).await.map_err(service)?;
    if found.is_none() {
        if let Some(request_id) = ["gen-", "resp_", "msg_"].iter().find_map(|prefix| id.strip_prefix(prefix)) {
            found = state.core.accounts.generation(p.user_id, request_id).await.map_err(service)?;
        }
    }
    let Some(r) = found else {
        return Err(ApiError::NotFound {
            message: "No request with this id for this account (a request is listed once it has ended)".into(),
            code: ErrorCode::GenerationNotFound,
        });
    };
    let mut data = json!({"data": {
        "id": r.request_id,
        "model": r.model,
        "provider_name": r.provider,
        "upstream_model": r.upstream_model,
        "endpoint": r.endpoint,
        "created_at": r.created_at.format(&Rfc3339).unwrap_or_default(),
        "streamed": r.streamed,
        "cancelled": r.status == 499,
        "status": r.status,
        "error_code": r.error_code,
        "latency_ms": r.latency_ms,
        "tokens_prompt": r.usage.prompt_tokens,
        "tokens_completion": r.usage.completion_tokens,
        "native_tokens_cached": r.usage.cached_tokens,
        "native_tokens_cache_write": r.usage.cache_write_tokens,
        "native_tokens_reasoning": r.usage.reasoning_tokens,
        "num_media_completion": r.usage.images,
        "usage_estimated": r.usage_estimated,
        "credits_charged": credits(r.charged),
        "credits_charged_micros": r.charged.0,
        "credits_held": credits(r.held),
        "cost_credits": credits(r.cost),
        "shortfall_credits": credits(r.shortfall),
    }});
    // OpenRouter's fields, as its clients read them: US$ as a JSON number (the exact debit),
    // milliseconds, the app the request came from.
    let openrouter = json!({
        "total_cost": r.charged.usd_number(),
        "total_cost_usd": r.charged.usd_text(),
        "latency": r.latency_ms,
        "native_tokens_prompt": r.usage.prompt_tokens,
        "native_tokens_completion": r.usage.completion_tokens,
        "is_byok": false,
        "usage": r.charged.usd_number(),
        "generation_time": r.latency_ms,
        "app_title": r.app_title,
        "origin": r.app_origin.as_deref().unwrap_or(""),
        // What OpenRouter reports and Layers does not keep: the provider's own id and finish
        // reason, moderation, search results, cache discounts, registered app ids.
        "upstream_id": null,
        "finish_reason": null,
        "native_finish_reason": null,
        "moderation_latency": null,
        "cache_discount": null,
        "upstream_inference_cost": null,
        "app_id": null,
        "num_media_prompt": null,
        "num_search_results": null,
    });
    if let (Some(d), Value::Object(more)) = (data["data"].as_object_mut(), openrouter) {
        d.extend(more);
    }
    Ok(Json(data))
}

fn credits(m: MicroCredits) -> String {
    m.credits_text()
}

/// A page cursor as text: the row's creation time in Unix nanoseconds and its id. Opaque to
/// clients; exact, so rows sharing a millisecond are neither skipped nor repeated.
fn cursor_text(c: &UsageCursor) -> String {
    format!("{}_{}", c.created_at.unix_timestamp_nanos(), c.id.simple())
}

fn parse_cursor(text: &str) -> Option<UsageCursor> {
    let (nanos, id) = text.split_once('_')?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
    // Within what every backend can store (PostgreSQL's timestamptz starts at 4713 BC).
    if !(1970..=9999).contains(&created_at.year()) {
        return None;
    }
    Some(UsageCursor { created_at, id: uuid::Uuid::parse_str(id).ok()? })
}

fn page(query: &str) -> Result<(u32, Option<UsageCursor>), ApiError> {
    let mut limit = 50;
    let mut before = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |message: &str| ApiError::Invalid {
            message: message.to_owned(),
            param: Some(key.to_owned()),
            code: ErrorCode::InvalidValue,
        };
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| bad("`limit` must be 1 to 200"))?;
            }
            "cursor" => {
                before = Some(
                    parse_cursor(value).ok_or_else(|| bad("`cursor` must be a `next_cursor` from a previous page"))?,
                );
            }
            _ => return Err(bad("unknown query parameter")),
        }
    }
    Ok((limit, before))
}

fn service(err: layers_core::ServiceError) -> ApiError {
    ApiError::Internal { detail: crate::error::error_chain(&err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_credits() {
        assert_eq!(page("").unwrap().0, 50);
        assert_eq!(page("limit=5").unwrap().0, 5);
        assert!(page("limit=0").is_err() && page("limit=201").is_err() && page("x=1").is_err());
        let c = UsageCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_763_900_000_123_456_000).unwrap(),
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(page(&format!("cursor={}", cursor_text(&c))).unwrap().1, Some(c));
        assert!(page("cursor=yesterday").is_err());
        assert_eq!(credits(MicroCredits(19_800)), "0.0198");
        assert_eq!(credits(MicroCredits(-1_500_000)), "-1.5");
        assert_eq!(credits(MicroCredits(0)), "0");
    }
}
