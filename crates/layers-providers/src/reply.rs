//! What an adapter returns: a whole completion, or a stream of OpenAI-shaped chunks.
//! Invariant: whatever the provider, chunks and bodies are in OpenAI's chat shape.

use std::pin::Pin;

use futures_util::Stream;
use layers_domain::Usage;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::error::ProviderError;

/// A non-streamed completion: the body in OpenAI's shape and its usage, if reported.
#[derive(Debug)]
pub struct Completion {
    pub body: Map<String, Value>,
    pub usage: Option<Usage>,
}

/// One item of a streamed completion.
#[derive(Debug)]
pub enum StreamEvent {
    /// A `chat.completion.chunk` object.
    Chunk(Map<String, Value>),
    /// Usage the provider has reported so far (cumulative: input at the start, output as it
    /// grows), so a stream cut short is still billed at least what the provider counted. The
    /// final usage also arrives in a chunk.
    Usage(Usage),
    /// The provider finished cleanly (`data: [DONE]` or its native equivalent).
    Done,
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// The fields every completion and chunk object starts with.
pub fn envelope(id: &str, object: &str, model: &str) -> Map<String, Value> {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("object".into(), json!(object));
    m.insert("created".into(), json!(created));
    m.insert("model".into(), json!(model));
    m
}
