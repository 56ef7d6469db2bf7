//! `POST /webhooks/stripe`: Stripe's events. The signature is checked over the raw bytes
//! before anything is parsed (any `v1` under any configured secret, five minutes either way,
//! constant time); a bad one is a 400 and nothing else happens. A verified event is applied
//! once (`PaymentService::process_event`); a replay answers 200 and changes nothing; an event
//! Layers does not act on answers 200; a failure on our side answers 503, so Stripe retries
//! (and the reconciliation finds it if it never succeeds).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use bytes::Bytes;
use layers_core::codes::ErrorCode;
use layers_core::payments::wire::Event;
use layers_domain::webhook_signature;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest event accepted (Stripe's are a few kilobytes).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

fn refused(message: &str) -> ApiError {
    ApiError::Invalid { message: message.to_owned(), param: None, code: ErrorCode::InvalidRequest }
}

pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(payments) = state.core.payments.clone() else {
        return Err(ApiError::NotFound { message: "Not found".into(), code: ErrorCode::NotFound });
    };
    let Some(header) = headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return Err(refused("missing Stripe-Signature header"));
    };
    let now = state.core.clock.now().unix_timestamp();
    if !webhook_signature::verify_any(&payments.webhook_secrets(), header, &body, now) {
        return Err(refused("the Stripe-Signature header does not sign this body"));
    }
    let event: Event = serde_json::from_slice(&body).map_err(|_| refused("the event is not a Stripe event object"))?;
    match payments.process_event(&event).await {
        Ok(Ok(_)) => Ok(Json(json!({"received": true}))),
        Ok(Err(unreadable)) => Err(refused(&unreadable.to_string())),
        Err(err) => Err(ApiError::Unavailable {
            detail: format!("Stripe event {}: {}", event.id, layers_core::error::chain(&err)),
        }),
    }
}
