//! An upstream SSE response as a stream of chunk events, whatever the provider: bytes are parsed
//! byte-exactly (`sse`) and each event is handed to the provider's mapper, which turns it into
//! zero or more OpenAI-shaped items. Invariant: after a `Done` or an error the stream ends; a
//! response that closes before the mapper said `Done` ends with a mid-stream error, never as a
//! clean finish.

use std::collections::VecDeque;

use futures_util::StreamExt;

use crate::budget::{Budget, Held};
use crate::error::ProviderError;
use crate::reply::{ChunkStream, StreamEvent};
use crate::sse::{SseDecoder, SseEvent};

/// A partly read event up to this size is not counted against the budget.
const SMALL_EVENT: usize = 64 * 1024;

pub type Item = Result<StreamEvent, ProviderError>;

/// Turns one provider event into the items the client stream receives.
pub trait EventMapper: Send + 'static {
    fn map(&mut self, event: SseEvent, out: &mut VecDeque<Item>);

    /// The body ended. Providers whose streams end by closing (Gemini) finish here and return
    /// true; for the others an end before their final event is a cut (false).
    fn end(&mut self, _out: &mut VecDeque<Item>) -> bool {
        false
    }
}

struct State<M> {
    bytes: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: SseDecoder,
    events: VecDeque<SseEvent>,
    items: VecDeque<Item>,
    mapper: M,
    finished: bool,
    body_done: bool,
    budget: Budget,
    /// What the partly read event holds of the budget.
    held: Held,
}

pub fn chunks<M: EventMapper>(resp: reqwest::Response, mapper: M, budget: Budget) -> ChunkStream {
    let state = State {
        bytes: resp.bytes_stream().boxed(),
        decoder: SseDecoder::new(),
        events: VecDeque::new(),
        items: VecDeque::new(),
        mapper,
        finished: false,
        body_done: false,
        budget,
        held: Held::default(),
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            if let Some(item) = st.items.pop_front() {
                if !matches!(item, Ok(StreamEvent::Chunk(_) | StreamEvent::Usage(_))) {
                    st.finished = true;
                }
                return Some((item, st));
            }
            if let Some(event) = st.events.pop_front() {
                st.mapper.map(event, &mut st.items);
                continue;
            }
            if st.body_done {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    if st.decoder.push(&bytes, &mut out).is_err() {
                        st.finished = true;
                        return Some((Err(ProviderError::Protocol("stream event too large")), st));
                    }
                    st.events.extend(out);
                    // A partly read event past a small size is held against the node's budget.
                    let pending = st.decoder.buffered();
                    if pending <= SMALL_EVENT {
                        st.held.release();
                    } else if let Err(err) = st.budget.cover(&mut st.held, pending) {
                        st.finished = true;
                        return Some((Err(err), st));
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(ProviderError::Transport(e)), st));
                }
                None => {
                    st.body_done = true;
                    if !st.decoder.has_partial_event() && st.mapper.end(&mut st.items) {
                        continue;
                    }
                    st.finished = true;
                    let message = Some("the provider closed the stream before it finished".to_owned());
                    return Some((Err(ProviderError::MidStream { message }), st));
                }
            }
        }
    }))
}
