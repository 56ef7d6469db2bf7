//! Handlers of the public API. Each extracts, calls one core service, and renders.

pub mod account;
pub mod chat;
pub mod health;
pub mod key;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod openapi_schema;
pub mod responses;
pub mod security_txt;
pub mod stripe_webhook;
