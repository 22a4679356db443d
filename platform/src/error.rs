//! One error type for every HTTP API, rendered as the Cloudflare-style envelope:
//! `{"success":false,"errors":[{"code":10001,"error":"invalid_token","message":"…"}],"messages":[],"result":null}`.
//!
//! `code` is a stable number (what Cloudflare clients read), `error` a stable snake_case name for
//! humans and logs. Products add their own kinds with [`ApiError::new`]; the common ones are
//! constructors here so the numbers stay unique.

use std::borrow::Cow;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub error: &'static str,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: u32,
        error: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            error,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 10400, "bad_request", message)
    }
    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            10001,
            "missing_token",
            "an Authorization: Bearer <token> header is required",
        )
    }
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            10002,
            "invalid_token",
            "the API token is unknown or revoked",
        )
    }
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, 10003, "forbidden", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            10404,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, 10409, "conflict", message)
    }
    pub fn payload_too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            10413,
            "payload_too_large",
            message,
        )
    }
    pub fn unsupported_media_type(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            10415,
            "unsupported_media_type",
            message,
        )
    }
    pub fn too_many_requests(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            10429,
            "rate_limited",
            message,
        )
    }
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            10504,
            "timeout",
            "the request took too long",
        )
    }
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            10503,
            "unavailable",
            message,
        )
    }
    /// Logs the cause with the request's span and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            10500,
            "internal_error",
            "internal error",
        )
    }

    /// A generic error for a status produced outside our handlers (axum rejections, timeouts).
    pub fn from_status(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        let (code, error) = match status.as_u16() {
            400 => (10400, "bad_request"),
            401 => (10001, "missing_token"),
            403 => (10003, "forbidden"),
            404 => (10404, "not_found"),
            405 => (10405, "method_not_allowed"),
            408 | 504 => (10504, "timeout"),
            409 => (10409, "conflict"),
            411 => (10411, "length_required"),
            413 => (10413, "payload_too_large"),
            415 => (10415, "unsupported_media_type"),
            422 => (10422, "unprocessable"),
            429 => (10429, "rate_limited"),
            503 => (10503, "unavailable"),
            s if s >= 500 => (10500, "internal_error"),
            _ => (10400, "bad_request"),
        };
        Self::new(status, code, error, message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({
            "success": false,
            "errors": [{ "code": self.code, "error": self.error, "message": self.message }],
            "messages": [],
            "result": null,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.error,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::internal(format_args!("storage: {e}"))
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::from_status(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::from_status(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::from_status(e.status(), e.body_text())
    }
}

/// The success envelope of management APIs: `{"success":true,"errors":[],"messages":[],"result":…}`.
pub fn envelope<T: serde::Serialize>(result: T) -> Json<serde_json::Value> {
    Json(json!({ "success": true, "errors": [], "messages": [], "result": result }))
}

/// Like [`envelope`], with Cloudflare's `result_info` for paged lists.
pub fn envelope_paged<T: serde::Serialize>(
    result: T,
    result_info: serde_json::Value,
) -> Json<serde_json::Value> {
    Json(
        json!({ "success": true, "errors": [], "messages": [], "result": result, "result_info": result_info }),
    )
}

pub type ApiResult<T> = Result<T, ApiError>;
