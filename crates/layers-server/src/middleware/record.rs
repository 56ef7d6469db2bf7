//! The response recorder of test runs (`testing.record_responses_dir`, refused in production):
//! each JSON response the server writes, with its method, path and status, one JSON line per
//! response, so scripts/openapi-check can validate every response of the test suite against
//! the OpenAPI document. Event streams are recorded by status and media type only.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Bodies larger than this are passed on unrecorded (the limit of a JSON answer here is far less).
const MAX_RECORDED: usize = 4 << 20;

#[derive(Debug)]
pub struct ResponseRecorder {
    file: Mutex<std::fs::File>,
}

impl ResponseRecorder {
    /// A recorder writing a new file in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Arc<ResponseRecorder>> {
        std::fs::create_dir_all(dir)?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("responses-{}-{stamp}-{}.jsonl", std::process::id(), rand::random::<u32>());
        let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?;
        Ok(Arc::new(ResponseRecorder { file: Mutex::new(file) }))
    }

    fn write(&self, line: &serde_json::Value) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{line}");
    }
}

pub async fn record(State(recorder): State<Arc<ResponseRecorder>>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let media = resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let entry = |body: serde_json::Value| serde_json::json!({"method": method, "path": path, "status": status, "content_type": media, "body": body});
    // Streams and bodies too large to hold are passed on untouched, recorded without a body.
    let size = axum::body::HttpBody::size_hint(resp.body()).upper();
    if !media.starts_with("application/json") || size.is_none_or(|n| n > MAX_RECORDED as u64) {
        recorder.write(&entry(serde_json::Value::Null));
        return resp;
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, MAX_RECORDED).await {
        Ok(bytes) => {
            let parsed = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String("(not JSON)".into()));
            recorder.write(&entry(parsed));
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(_) => Response::from_parts(parts, Body::empty()),
    }
}
