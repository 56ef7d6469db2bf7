//! The stylesheet and the one small script, served from the binary under a path that changes with its content, so
//! browsers may cache it for a year.

use axum::response::{IntoResponse, Response};
use http::header;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/copy.js");

/// Where pages link the stylesheet (the version is bumped when the file changes).
pub const CSS_PATH: &str = "/assets/app-v3.css";
/// The one script: copy buttons, a convenience over the selectable fields pages show anyway.
pub const JS_PATH: &str = "/assets/copy-v1.js";

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

pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        JS,
    )
        .into_response()
}
