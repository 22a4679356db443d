//! A two-party call demo that uses only the HTTP API (served at `/calls/demo`).

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("demo.html"))
}
