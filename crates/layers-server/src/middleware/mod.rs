//! Cross-cutting layers, composed in one place (`router::build_router`).

pub mod context;
pub mod cors;
pub mod metrics;
