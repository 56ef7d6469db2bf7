//! `/.well-known/security.txt` (RFC 9116): where to report a vulnerability, when the operator
//! set `security.disclosure_contact`; 404 otherwise.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use time::format_description::well_known::Rfc3339;

use crate::state::AppState;

pub async fn security_txt(State(state): State<AppState>) -> Response {
    let Some(contact) = state.disclosure_contact.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // A year ahead, as the RFC recommends at most; it moves with every answer.
    let expires = (state.core.clock.now() + time::Duration::days(365))
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let body = format!(
        "Contact: {contact}\nExpires: {expires}\nPreferred-Languages: en\nCanonical: {}/.well-known/security.txt\n",
        state.public_url()
    );
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
