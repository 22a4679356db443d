//! Errors of the `/v1` sessions API: the platform envelope plus Cloudflare's
//! `errorCode`/`errorDescription` fields, which Realtime clients read.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use platform::ApiError;

use crate::sfu::types::SfuError;

#[derive(Debug)]
pub struct SessionApiError(pub ApiError, pub &'static str);

impl SessionApiError {
    pub fn new(
        status: StatusCode,
        code: u32,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self(ApiError::new(status, code, error, message.into()), error)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 31400, "invalid_request", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            31401,
            "invalid_app_secret",
            "the app id or its secret is wrong",
        )
    }
    pub fn sdp_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            31413,
            "sdp_too_large",
            format!("session descriptions may be at most {max} bytes"),
        )
    }
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            31429,
            "rate_limited",
            "too many API calls for this session; slow down",
        )
    }
}

impl From<SfuError> for SessionApiError {
    fn from(e: SfuError) -> Self {
        let message = e.to_string();
        match e {
            SfuError::BadSdp(_) => {
                Self::new(StatusCode::BAD_REQUEST, 31001, "invalid_sdp", message)
            }
            SfuError::NoCodec => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                31015,
                "no_supported_codec",
                message,
            ),
            SfuError::NotFound("session") => {
                Self::new(StatusCode::NOT_FOUND, 31404, "session_not_found", message)
            }
            SfuError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, 31405, "not_found", message),
            SfuError::NothingPending => {
                Self::new(StatusCode::CONFLICT, 31409, "no_pending_offer", message)
            }
            SfuError::AlreadyPending => Self::new(
                StatusCode::CONFLICT,
                31410,
                "renegotiation_pending",
                message,
            ),
            SfuError::Limit(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                31414,
                "limit_exceeded",
                message,
            ),
            SfuError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                31503,
                "unavailable",
                message,
            ),
        }
    }
}

impl From<ApiError> for SessionApiError {
    fn from(e: ApiError) -> Self {
        let error = e.error;
        Self(e, error)
    }
}

impl From<axum::extract::rejection::JsonRejection> for SessionApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for SessionApiError {
    fn into_response(self) -> Response {
        let mut body = self.0.body();
        body["errorCode"] = self.1.into();
        body["errorDescription"] = self.0.message.to_string().into();
        (self.0.status, Json(body)).into_response()
    }
}
