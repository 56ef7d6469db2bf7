//! An OpenAI-compatible SSE response as a stream of chunk objects.
//! Invariant: the stream ends with `Done` only after `data: [DONE]`; a cut or an error event
//! from the upstream ends it with an error.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::error::ProviderError;
use crate::reply::{ChunkStream, StreamEvent};
use crate::sse::SseEvent;
use crate::sse_stream::{self, EventMapper, Item};
use crate::transport::error_message;

struct OpenAiEvents;

impl EventMapper for OpenAiEvents {
    fn map(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        out.push_back(to_item(&event));
    }
}

pub(super) fn chunks(resp: reqwest::Response, budget: crate::budget::Budget) -> ChunkStream {
    sse_stream::chunks(resp, OpenAiEvents, budget)
}

fn to_item(event: &SseEvent) -> Result<StreamEvent, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(StreamEvent::Done);
    }
    if event.event.as_deref() == Some("error") {
        return Err(ProviderError::MidStream { message: error_message(data.as_bytes()) });
    }
    let chunk: Map<String, Value> =
        serde_json::from_str(data).map_err(|_| ProviderError::Protocol("stream event is not a JSON object"))?;
    if chunk.contains_key("error") {
        return Err(ProviderError::MidStream { message: error_message(data.as_bytes()) });
    }
    Ok(StreamEvent::Chunk(chunk))
}
