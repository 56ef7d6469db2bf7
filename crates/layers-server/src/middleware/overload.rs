//! Load shedding: past `max_in_flight` requests on this node, a new request is answered at once
//! with 503 `overloaded` and `retry-after` instead of queueing behind the others (SPEC §8).
//! Invariant: a request counts as in flight until its response body has ended (streams
//! included), and on its connection, so the idle watchdog never closes a busy connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::connections::{Connection, RequestGuard};
use crate::error::ApiError;

/// The node's count of requests in flight and its ceiling.
#[derive(Clone, Debug)]
pub struct Shedding {
    in_flight: Arc<AtomicUsize>,
    max: usize,
    /// Requests refused as overloaded.
    pub shed: Arc<AtomicU64>,
}

impl Shedding {
    pub fn new(max: usize) -> Self {
        Shedding { in_flight: Default::default(), max: max.max(1), shed: Default::default() }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Probes and metrics stay answerable when the node is saturated.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

pub async fn shed(State(shedding): State<Shedding>, req: Request, next: Next) -> Response {
    let on_connection = req.extensions().get::<Arc<Connection>>().map(Connection::request);
    let counted = if exempt(req.uri().path()) {
        None
    } else {
        let now = shedding.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight(shedding.in_flight.clone());
        if now > shedding.max {
            shedding.shed.fetch_add(1, Ordering::Relaxed);
            return ApiError::Overloaded.into_response();
        }
        Some(guard)
    };
    let resp = next.run(req).await;
    resp.map(|body| Body::new(Guarded { body, _guards: (counted, on_connection) }))
}

/// A response body that holds the request's in-flight marks until it ends.
struct Guarded {
    body: Body,
    _guards: (Option<InFlight>, Option<RequestGuard>),
}

impl HttpBody for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
