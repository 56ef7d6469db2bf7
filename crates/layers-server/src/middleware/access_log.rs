//! One structured access-log line per request, written when its response body ends (a stream
//! included, so its tokens and charge are known) or when the client leaves: request id, method,
//! path, status, duration, and from the request's `AccessRecord` the user and key ids, model,
//! provider, tokens, credits and the gateway's overhead in µs. JSON in production (the
//! subscriber's format). Invariant: never a query string, an e-mail, a key or a prompt.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use layers_core::access::AccessRecord;
use tokio::time::Instant;

/// What the line says besides the record.
pub struct Line {
    pub request_id: String,
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub started: Instant,
    pub record: AccessRecord,
}

impl Line {
    fn write(self, completed: bool) {
        // Below the configured level, nothing of the line is gathered.
        if !tracing::enabled!(target: "layers::access", tracing::Level::INFO) {
            return;
        }
        let f = self.record.facts();
        let usage = f.usage.unwrap_or_default();
        tracing::info!(
            target: "layers::access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            completed,
            user_id = %f.user_id.map(|u| u.to_string()).unwrap_or_default(),
            key_id = %f.key_id.map(|k| k.to_string()).unwrap_or_default(),
            model = f.model.as_deref().unwrap_or(""),
            provider = f.provider.as_deref().unwrap_or(""),
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            credits = %f.credits.map(|c| c.credits_text()).unwrap_or_default(),
            overhead_us = f.overhead_us.unwrap_or(0),
            "access"
        );
    }
}

/// A response body that writes its request's access line when it ends.
pub struct Logged {
    inner: Body,
    line: Option<Line>,
}

impl Logged {
    pub fn wrap(inner: Body, line: Line) -> Body {
        Body::new(Logged { inner, line: Some(line) })
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = &polled {
            if let Some(line) = self.line.take() {
                line.write(true);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // The body was not read to its end: the client left (or the body was empty and never polled).
        if let Some(line) = self.line.take() {
            let empty = self.inner.is_end_stream();
            line.write(empty);
        }
    }
}
