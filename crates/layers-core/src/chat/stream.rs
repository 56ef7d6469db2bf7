//! The client side of a streamed completion: OpenAI SSE out, as chunks arrive, with metering
//! that survives a disconnect. Invariant: the meter is finished exactly once — at `[DONE]`, at
//! an upstream error, or, when the client went away, by a drain task the server owns that reads
//! the provider's stream to its end so the charge is the provider's own count — and never with
//! an `.await` in the body, so axum dropping the body cannot lose a charge.

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
use tokio::time::Instant;

use super::complete::{add_cost, answer_id, layers_object, openrouter_choice_fields};
use super::meter::{Ending, Meter, Metered};
use crate::failure::{describe, UpstreamFailure};
use crate::tasks::Tasks;

/// What the client stream needs besides the upstream stream.
pub(crate) struct StreamSetup {
    pub public_model: String,
    /// The provider serving the stream, named on every chunk as OpenRouter does.
    pub provider: String,
    pub request_id: String,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub show_usage: bool,
    pub started: Instant,
    /// Where a stream the client left is drained, and until when.
    pub tasks: Tasks,
    pub deadline: Instant,
}

pub struct ClientStream {
    state: Option<State>,
    first: Option<Map<String, Value>>,
    public_model: Arc<str>,
    /// The answer's id on every chunk (`gen-<request id>`).
    answer_id: Arc<str>,
    provider: Arc<str>,
    request_id: Arc<str>,
    show_usage: bool,
    started: Instant,
    /// A chunk carrying usage, held back until the next event says whether it is the last
    /// (then it also carries the exact charge).
    held: Option<Map<String, Value>>,
    /// Bytes ready to go out before anything else.
    pending: Option<Bytes>,
    done: bool,
    tasks: Tasks,
    deadline: Instant,
    /// The request's span: the body is polled outside the handler, logs keep their ids.
    span: tracing::Span,
}

/// The upstream stream with what it has produced so far and the meter to finish.
struct State {
    inner: ChunkStream,
    meter: Meter,
    usage: Option<Usage>,
    /// The provider's final usage arrived (in a chunk, at the end of its stream).
    final_usage: bool,
    generated_bytes: usize,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream").field("model", &self.public_model).field("done", &self.done).finish()
    }
}

impl ClientStream {
    pub(super) fn new(inner: ChunkStream, first: Map<String, Value>, setup: StreamSetup, meter: Meter) -> ClientStream {
        ClientStream {
            state: Some(State { inner, meter, usage: None, final_usage: false, generated_bytes: 0 }),
            first: Some(first),
            public_model: Arc::from(setup.public_model),
            answer_id: Arc::from(answer_id(&setup.request_id)),
            provider: Arc::from(setup.provider),
            request_id: Arc::from(setup.request_id),
            show_usage: setup.show_usage,
            started: setup.started,
            held: None,
            pending: None,
            done: false,
            tasks: setup.tasks,
            deadline: setup.deadline,
            span: tracing::Span::current(),
        }
    }

    /// Takes in one upstream chunk; returns what the client should see of it now.
    fn accept(&mut self, mut chunk: Map<String, Value>) -> Option<Bytes> {
        let state = self.state.as_mut()?;
        state.generated_bytes += delta_bytes(&chunk);
        let usage = chunk.get("usage").filter(|u| !u.is_null()).cloned();
        if !self.show_usage {
            // The gateway asked for usage to bill; the client did not, so it does not see it.
            chunk.remove("usage");
        }
        if let Some(u) = usage.as_ref().and_then(parse_usage) {
            state.usage = Some(max_usage(state.usage, u));
            state.final_usage = true;
        }
        let usage_only = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
        chunk.insert("id".into(), json!(&*self.answer_id));
        chunk.insert("provider".into(), json!(&*self.provider));
        openrouter_choice_fields(&mut chunk, "delta");
        chunk.insert("model".into(), json!(&*self.public_model));
        match usage {
            Some(raw) if self.show_usage => {
                if let Some(parsed) = &state.usage {
                    chunk.insert("usage".into(), usage_value(parsed, Some(&raw)));
                }
                // Out once the next event says whether the stream ends here.
                let previous = self.held.replace(chunk);
                previous.map(|c| render(&c))
            }
            Some(_) => (!usage_only).then(|| render(&chunk)),
            None => {
                let mut out = self.held.take().map(|c| render(&c).to_vec()).unwrap_or_default();
                out.extend_from_slice(&render(&chunk));
                Some(Bytes::from(out))
            }
        }
    }

    fn finish(&mut self, ending: impl FnOnce(Option<Usage>, usize, bool) -> Ending) -> Option<Metered> {
        let mut state = self.state.take()?;
        Some(state.meter.finish(ending(state.usage, state.generated_bytes, state.final_usage)))
    }

    /// The end of a clean stream: the held usage chunk with the exact charge, then `[DONE]`.
    fn complete(&mut self) -> Bytes {
        let metered = self.finish(|usage, generated_bytes, _| Ending::Completed { usage, generated_bytes });
        let mut out = Vec::new();
        if let Some(mut chunk) = self.held.take() {
            if let Some(m) = metered {
                let latency = self.started.elapsed().as_millis() as u64;
                chunk.insert("layers".into(), layers_object(m.charged, latency, None));
                if let Some(usage) = chunk.get_mut("usage") {
                    add_cost(usage, m.charged);
                }
            }
            out.extend_from_slice(&render(&chunk));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    fn fail(&mut self, failure: &UpstreamFailure) -> Bytes {
        // After the 200 no middleware sees this failure: it is logged here, once.
        tracing::warn!(
            request_id = %&*self.request_id,
            code = %failure.code,
            cause = failure.cause.as_deref().unwrap_or(""),
            "the stream ended with an upstream error"
        );
        let code = failure.code;
        self.finish(|usage, generated_bytes, final_usage| Ending::Failed { code, usage, generated_bytes, final_usage });
        let mut out = self.held.take().map(|c| render(&c).to_vec()).unwrap_or_default();
        let payload = json!({
            "error": {"message": failure.message, "type": failure.code.error_type(), "code": failure.code.as_str(), "param": null},
            "request_id": &*self.request_id,
        });
        sse::write_data(&mut out, payload.to_string().as_bytes());
        Bytes::from(out)
    }
}

impl Stream for ClientStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.span.clone();
        let _entered = span.enter();
        loop {
            if let Some(bytes) = this.pending.take() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let event = match this.first.take() {
                Some(first) => Some(Ok(StreamEvent::Chunk(first))),
                None => match this.state.as_mut().map(|s| s.inner.poll_next_unpin(cx)) {
                    Some(Poll::Ready(ev)) => ev,
                    Some(Poll::Pending) => return Poll::Pending,
                    None => return Poll::Ready(None),
                },
            };
            match event {
                Some(Ok(StreamEvent::Chunk(chunk))) => {
                    if let Some(bytes) = this.accept(chunk).filter(|b| !b.is_empty()) {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
                Some(Ok(StreamEvent::Usage(u))) => {
                    if let Some(state) = this.state.as_mut() {
                        state.usage = Some(max_usage(state.usage, u));
                    }
                }
                Some(Ok(StreamEvent::Done)) => {
                    this.done = true;
                    this.pending = Some(this.complete());
                }
                Some(Err(err)) => {
                    this.done = true;
                    tracing::warn!(error = %crate::error::chain(&err), "upstream stream failed");
                    this.pending = Some(this.fail(&describe(&err)));
                }
                None => {
                    this.done = true;
                    let err = layers_providers::ProviderError::MidStream { message: None };
                    this.pending = Some(this.fail(&describe(&err)));
                }
            }
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // Still metered here only if the client disconnected before the stream ended. The
        // provider goes on (and bills) until it finishes: read its stream to the end, in a task
        // the server owns, and charge its own count of what it produced.
        let Some(state) = self.state.take() else { return };
        let span = self.span.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            let _entered = span.enter();
            let mut state = state;
            let (usage, generated_bytes) = (state.usage, state.generated_bytes);
            state.meter.finish(Ending::ClientGone { usage, generated_bytes, complete: false });
            return;
        }
        let (deadline, stop) = (self.deadline, self.tasks.work_deadline());
        self.tasks.spawn_work("stream-drain", async move {
            let _entered = span.enter();
            drain(state, deadline, stop).await;
        });
    }
}

/// Reads the rest of a stream the client left, keeping the provider's usage, and meters it
/// (with what it has when a shutdown cannot wait any longer).
async fn drain(mut state: State, deadline: Instant, stop: tokio_util::sync::CancellationToken) {
    let mut complete = false;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, state.inner.next()) => next,
            () = stop.cancelled() => break,
        };
        match next {
            Ok(Some(Ok(StreamEvent::Chunk(chunk)))) => {
                state.generated_bytes += delta_bytes(&chunk);
                if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()).and_then(parse_usage) {
                    state.usage = Some(max_usage(state.usage, u));
                }
            }
            Ok(Some(Ok(StreamEvent::Usage(u)))) => state.usage = Some(max_usage(state.usage, u)),
            Ok(Some(Ok(StreamEvent::Done))) => {
                complete = true;
                break;
            }
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    let (usage, generated_bytes) = (state.usage, state.generated_bytes);
    state.meter.finish(Ending::ClientGone { usage, generated_bytes, complete });
}

/// The larger of two reports of one request's usage, field by field (reports only grow).
fn max_usage(a: Option<Usage>, b: Usage) -> Usage {
    let Some(a) = a else { return b };
    Usage {
        prompt_tokens: a.prompt_tokens.max(b.prompt_tokens),
        completion_tokens: a.completion_tokens.max(b.completion_tokens),
        cached_tokens: a.cached_tokens.max(b.cached_tokens),
        cache_write_tokens: a.cache_write_tokens.max(b.cache_write_tokens),
        reasoning_tokens: a.reasoning_tokens.max(b.reasoning_tokens),
        images: a.images.max(b.images),
    }
}

fn render(chunk: &Map<String, Value>) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    // Serialising a map of JSON values cannot fail.
    sse::write_data(&mut buf, &serde_json::to_vec(chunk).unwrap_or_default());
    Bytes::from(buf)
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
