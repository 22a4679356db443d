//! The embeddable upload widget and its demo page, compiled into the binary.

use axum::{http::header, response::IntoResponse};

const SCRIPT: &str = include_str!("../widget/widget.js");
const DEMO: &str = include_str!("../widget/demo.html");

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
}

pub async fn demo() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DEMO,
    )
}
