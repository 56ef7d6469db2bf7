//! An OpenAI-compatible SSE response as a stream of chunk objects.
//! Invariant: the stream ends with `Done` only after `data: [DONE]`; a cut or an error event
//! from the upstream ends it with an error.

use std::collections::VecDeque;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::ProviderError;
use crate::reply::{ChunkStream, StreamEvent};
use crate::sse::{SseDecoder, SseEvent};
use crate::transport::error_message;

struct State {
    bytes: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: SseDecoder,
    pending: VecDeque<SseEvent>,
    finished: bool,
}

pub(super) fn chunks(resp: reqwest::Response) -> ChunkStream {
    let state = State {
        bytes: resp.bytes_stream().boxed(),
        decoder: SseDecoder::new(),
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            if let Some(event) = st.pending.pop_front() {
                let item = to_item(&event);
                if !matches!(item, Ok(StreamEvent::Chunk(_))) {
                    st.finished = true;
                }
                return Some((item, st));
            }
            match st.bytes.next().await {
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    if st.decoder.push(&bytes, &mut out).is_err() {
                        st.finished = true;
                        return Some((Err(ProviderError::Protocol("stream event too large")), st));
                    }
                    st.pending.extend(out);
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(ProviderError::Transport(e)), st));
                }
                None => {
                    st.finished = true;
                    let message = Some("the provider closed the stream before it finished".to_owned());
                    return Some((Err(ProviderError::MidStream { message }), st));
                }
            }
        }
    }))
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
