//! End-to-end tests of Layers: the real binary's start-up path, over HTTP, against mock
//! upstreams that speak each provider's wire format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods, clippy::print_stdout)]

mod accounts;
mod anomaly;
mod anthropic;
mod architecture;
mod attacks;
mod auth;
mod billing;
mod billing_load;
mod blocking;
mod chat;
mod cli;
mod dashboard;
mod disconnect;
mod disconnect_bytes;
mod edge;
mod gemini;
mod hostile_upstream;
mod incident;
mod lifecycle;
mod limits;
mod media;
mod money;
mod money_endings;
mod money_exact;
mod money_partition;
mod multinode;
mod oidc;
mod openapi;
mod openrouter;
mod operators;
mod payments;
mod privacy;
mod ratelimit;
mod readme;
mod routing;
mod sdk_anthropic;
mod sdk_openai;
mod suites;
mod support;
mod upstream_errors;
