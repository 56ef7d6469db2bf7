//! The stylesheet, served from the binary under a path that changes with its content, so
//! browsers may cache it for a year.

use axum::response::{IntoResponse, Response};
use http::header;

const CSS: &str = include_str!("../../assets/app.css");

/// Where pages link the stylesheet (the version is bumped when the file changes).
pub const CSS_PATH: &str = "/assets/app-v1.css";

pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}
