//! Upstream adapters of Layers. Every provider is spoken to through an [`adapter::Adapter`]
//! that takes and returns the OpenAI chat shape.
//!
//! Components:
//! - [`chat`]: the OpenAI Chat Completions request shape clients send.
//! - [`adapter`]: adapters by kind and the registry of configured providers.
//! - [`openai`]: any OpenAI-compatible upstream.
//! - [`anthropic`]: Anthropic's native Messages API.
//! - [`fetch`]: images given by URL, fetched safely for providers that take them only inline.
//! - [`gemini`]: Google's native Gemini API.
//! - [`media`]: embeddings and image generation calls in OpenAI's shapes.
//! - [`sandbox`]: the built-in deterministic provider.
//! - [`sse`]: byte-exact Server-Sent Events parsing and writing.
//! - [`sse_stream`]: an upstream SSE response as a stream of OpenAI-shaped chunks.
//! - [`timing`]: per-route timeouts and the stream wrapper that enforces them.
//! - [`translate`]: reading the OpenAI chat shape the same way for every native translation.
//! - [`transport`]: the HTTP client, bounded reads, upstream error bodies.
//! - [`usage_json`]: usage in OpenAI's JSON shape.
//! - [`error`]: failures with blame and retryability.

pub mod adapter;
pub mod anthropic;
pub mod budget;
pub mod chat;
pub mod error;
pub mod fetch;
pub mod gemini;
pub mod media;
pub mod openai;
pub mod reply;
pub mod sandbox;
pub mod sse;
pub mod sse_stream;
pub mod timing;
pub mod translate;
pub mod transport;
pub mod usage_json;

pub use adapter::{Adapter, ChatCall, ProviderKind, ProviderSettings, Providers};
pub use budget::{Budget, UpstreamLimits};
pub use chat::ChatRequest;
pub use error::{Blame, ProviderError, TimeoutPhase};
pub use reply::{ChunkStream, Completion, StreamEvent};
pub use timing::Timeouts;
