//! A webhook receiver: records every POST (its headers and raw body) and answers 200, or fails
//! the first few on request, so tests can check signatures and retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use crate::mock_server::{MockServer, Recorder};

/// One delivery as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub struct WebhookCatcher {
    server: MockServer<Delivery>,
    fail_first: Arc<AtomicUsize>,
}

impl WebhookCatcher {
    pub async fn start() -> WebhookCatcher {
        let fail_first = Arc::new(AtomicUsize::new(0));
        let fails = fail_first.clone();
        let server =
            MockServer::start(move |rec| Router::new().route("/hook", post(receive)).with_state((rec, fails))).await;
        WebhookCatcher { server, fail_first }
    }

    /// Where to send: `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        self.server.url("/hook")
    }

    /// Answers 500 to the next `n` deliveries (they are still recorded).
    pub fn fail_next(&self, n: usize) {
        self.fail_first.store(n, Ordering::Relaxed);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.server.requests()
    }

    /// Waits up to 15 s for at least `n` deliveries.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let all = self.deliveries();
            if all.len() >= n {
                return all;
            }
            assert!(tokio::time::Instant::now() < deadline, "expected {n} webhook deliveries, got {}", all.len());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State((rec, fails)): State<(Recorder<Delivery>, Arc<AtomicUsize>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    rec.record(Delivery { headers, body });
    let failing = fails.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}
