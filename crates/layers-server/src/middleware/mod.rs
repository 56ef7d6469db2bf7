//! Cross-cutting layers, composed in one place (`router::build_router`).

pub mod access_log;
pub mod anthropic_dialect;
pub mod client_ip;
pub mod context;
pub mod cors;
pub mod metrics;
pub mod overload;
pub mod rate_headers;
pub mod record;
