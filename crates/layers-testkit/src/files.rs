//! A tiny web server of fixed files, for tests where the gateway fetches something by URL.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Serves each `(path, content type, body)` on 127.0.0.1; returns `http://127.0.0.1:PORT`.
pub async fn serve(files: Vec<(&'static str, &'static str, &'static [u8])>) -> String {
    let mut app = Router::new();
    for (path, content_type, body) in files {
        app = app.route(path, get(move || async move { ([(CONTENT_TYPE, content_type)], body).into_response() }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
