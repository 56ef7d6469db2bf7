//! The client side of a streamed completion: OpenAI SSE out, as chunks arrive, with metering
//! that survives a disconnect. Invariant: the meter is finished exactly once — at `[DONE]`, at
//! an upstream error, or in `Drop` when the client went away — and never with an `.await`, so
//! axum dropping the body cannot lose a charge.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use layers_domain::Usage;
use layers_providers::usage_json::{parse_usage, usage_value};
use layers_providers::{sse, ChunkStream, StreamEvent};
use serde_json::{json, Map, Value};

use super::errors::{describe, UpstreamFailure};
use super::meter::{Ending, Meter};

pub struct ClientStream {
    inner: ChunkStream,
    first: Option<Map<String, Value>>,
    public_model: Arc<str>,
    request_id: Arc<str>,
    show_usage: bool,
    meter: Option<Meter>,
    usage: Option<Usage>,
    generated_bytes: usize,
    done: bool,
    /// The request's span: the body is polled outside the handler, logs keep their ids.
    span: tracing::Span,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream").field("model", &self.public_model).field("done", &self.done).finish()
    }
}

impl ClientStream {
    pub(super) fn new(
        inner: ChunkStream,
        first: Map<String, Value>,
        public_model: &str,
        request_id: &str,
        show_usage: bool,
        meter: Meter,
    ) -> ClientStream {
        ClientStream {
            inner,
            first: Some(first),
            public_model: Arc::from(public_model),
            request_id: Arc::from(request_id),
            show_usage,
            meter: Some(meter),
            usage: None,
            generated_bytes: 0,
            done: false,
            span: tracing::Span::current(),
        }
    }

    /// Shapes one upstream chunk for the client; `None` when the client should not see it.
    fn render(&mut self, mut chunk: Map<String, Value>) -> Option<Bytes> {
        self.generated_bytes += delta_bytes(&chunk);
        let usage = chunk.get("usage").filter(|u| !u.is_null()).cloned();
        if let Some(u) = &usage {
            self.usage = parse_usage(u);
        }
        let usage_only = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
        if self.show_usage {
            if let (Some(parsed), Some(raw)) = (&self.usage, &usage) {
                chunk.insert("usage".into(), usage_value(parsed, Some(raw)));
            }
        } else {
            // The gateway asked for usage to bill; the client did not, so it does not see it.
            chunk.remove("usage");
            if usage_only {
                return None;
            }
        }
        chunk.insert("model".into(), json!(&*self.public_model));
        let mut buf = Vec::with_capacity(256);
        sse::write_data(&mut buf, &serde_json::to_vec(&chunk).unwrap_or_default());
        Some(Bytes::from(buf))
    }

    fn finish(&mut self, ending: Ending) -> Option<super::meter::Metered> {
        self.meter.take().map(|mut meter| meter.finish(ending))
    }

    fn fail(&mut self, failure: &UpstreamFailure) -> Bytes {
        self.finish(Ending::Failed {
            status: failure.status,
            code: failure.code,
            usage: self.usage,
            generated_bytes: self.generated_bytes,
        });
        let payload = json!({
            "error": {"message": failure.message, "type": failure.error_type, "code": failure.code, "param": null},
            "request_id": &*self.request_id,
        });
        let mut buf = Vec::new();
        sse::write_data(&mut buf, payload.to_string().as_bytes());
        Bytes::from(buf)
    }
}

impl Stream for ClientStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.span.clone();
        let _entered = span.enter();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let event = match this.first.take() {
                Some(first) => Some(Ok(StreamEvent::Chunk(first))),
                None => match this.inner.poll_next_unpin(cx) {
                    Poll::Ready(ev) => ev,
                    Poll::Pending => return Poll::Pending,
                },
            };
            match event {
                Some(Ok(StreamEvent::Chunk(chunk))) => {
                    if let Some(bytes) = this.render(chunk) {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
                Some(Ok(StreamEvent::Done)) => {
                    this.done = true;
                    this.finish(Ending::Completed { usage: this.usage, generated_bytes: this.generated_bytes });
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n"))));
                }
                Some(Err(err)) => {
                    this.done = true;
                    tracing::warn!(error = %err, "upstream stream failed");
                    let bytes = this.fail(&describe(&err));
                    return Poll::Ready(Some(Ok(bytes)));
                }
                None => {
                    this.done = true;
                    let err = layers_providers::ProviderError::MidStream { message: None };
                    let bytes = this.fail(&describe(&err));
                    return Poll::Ready(Some(Ok(bytes)));
                }
            }
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // Still metered here only if the client disconnected before the stream ended.
        let span = self.span.clone();
        let _entered = span.enter();
        let (usage, generated_bytes) = (self.usage, self.generated_bytes);
        self.finish(Ending::ClientGone { usage, generated_bytes });
    }
}

/// Bytes of generated output in a chunk (content, reasoning, tool-call arguments).
fn delta_bytes(chunk: &Map<String, Value>) -> usize {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else { return 0 };
    choices
        .iter()
        .filter_map(|c| c.get("delta"))
        .map(|d| {
            let text = |k: &str| d.get(k).and_then(Value::as_str).map_or(0, str::len);
            let calls = d.get("tool_calls").and_then(Value::as_array).map_or(0, |calls| {
                calls.iter().filter_map(|c| c.get("function")?.get("arguments")?.as_str()).map(str::len).sum()
            });
            text("content") + text("reasoning_content") + text("reasoning") + calls
        })
        .sum()
}
