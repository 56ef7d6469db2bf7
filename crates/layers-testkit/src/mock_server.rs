//! What every mock provider shares: an HTTP server on a free port, the requests it received (in
//! order), and whether it writes SSE in small pieces. Each mock adds only its wire format.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;

/// The handlers' side: record a request, ask how to write.
#[derive(Clone)]
pub struct Recorder<R> {
    log: Arc<Mutex<Vec<R>>>,
    split: Arc<AtomicBool>,
}

impl<R: Clone> Recorder<R> {
    pub fn record(&self, request: R) {
        self.log.lock().unwrap().push(request);
    }

    /// Whether SSE events go out in 3-byte pieces (inside `\n\n` and multi-byte characters).
    pub fn split_writes(&self) -> bool {
        self.split.load(Ordering::Relaxed)
    }
}

/// The test's side: where the mock listens, and what it received.
pub struct MockServer<R> {
    pub addr: SocketAddr,
    recorder: Recorder<R>,
}

impl<R: Clone + Send + 'static> MockServer<R> {
    /// Serves the router `build` makes (its handlers get the recorder) on a free port.
    pub async fn start(build: impl FnOnce(Recorder<R>) -> Router) -> MockServer<R> {
        let recorder = Recorder { log: Arc::default(), split: Arc::default() };
        let app = build(recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockServer { addr, recorder }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn split_writes(&self, on: bool) {
        self.recorder.split.store(on, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<R> {
        self.recorder.log.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> R {
        self.requests().pop().expect("the mock received no request")
    }
}
