//! Pure domain logic of Layers. Nothing here does I/O or reads a clock: callers pass time in,
//! so every rule can be tested exhaustively. (The one exception: fresh UUIDs for new ids.)
//!
//! Components:
//! - [`money`]: micro-credits, per-token rates, markup and the cost of a request.
//! - [`credit`]: caps, estimates and the lease book that holds and settles credit.
//! - [`dashboard`]: calendar periods of key limits, runway, alert thresholds, CSV cells.
//! - [`webhook_signature`]: webhook signatures in Stripe's scheme, sent and received.
//! - [`key_format`]: the `lyr_{live,test}_sk_` API key format with its checksum.
//! - [`base62`]: fixed-width base62 encoding used by keys and ids.
//! - [`hex`]: lower-case hexadecimal.
//! - [`ids`]: typed identifiers (users, keys, requests).
//! - [`identity`]: password rules, same-site redirect targets and session lifetimes.
//! - [`tier`]: account tiers.
//! - [`model`]: model names, routes and specs of the catalogue.
//! - [`limits`]: input limits of a chat request (SPEC §2.3).
//! - [`ratelimit`]: the exact sliding-window request limiter and the tokens window (SPEC §5).
//! - [`routing`]: retry backoff and the circuit breaker of upstream routes (SPEC §2.2).
//! - [`tokens`]: conservative token estimates used before upstream usage is known.
//! - [`usage`]: token usage reported by an upstream.

pub mod anomaly;
pub mod attribution;
pub mod base62;
pub mod credit;
pub mod dashboard;
pub mod hex;
pub mod identity;
pub mod ids;
pub mod key_format;
pub mod limits;
pub mod model;
pub mod money;
pub mod payments;
pub mod ratelimit;
pub mod routing;
pub mod tier;
pub mod tokens;
pub mod usage;
pub mod webhook_signature;

pub use ids::{KeyId, RequestId, UserId};
pub use key_format::{ApiKey, KeyEnv, KeyFormatError};
pub use model::{ImagePrice, ModelKind, ModelName, ModelSpec, RouteSpec, SearchContextSize, SearchFees};
pub use money::{Markup, MicroCredits, Price, Rate, Rates};
pub use tier::Tier;
pub use usage::Usage;
