//! HTTP shell of the Images product: routes, shared state, the image JSON shape and the error
//! codes. Handlers live in one module per resource.

mod delivery;
mod direct;
mod images;
mod settings;
mod upload;
mod widget;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{DefaultBodyLimit, FromRef},
    http::StatusCode,
    routing::{delete, get, post},
    Router,
};
use platform::{time_util::rfc3339_from_ms, ApiError, Platform};
use serde_json::json;

use crate::{
    engine::Engine,
    faces::Faces,
    fetch::{FetchError, FetchPolicy},
    store::{ImageRow, Settings},
    transform::{ProbeError, TransformError},
    ImagesConfig,
};

pub struct Inner {
    pub platform: Platform,
    pub config: ImagesConfig,
    pub engine: Engine,
    pub faces: Faces,
    /// Widget key → (minute, uploads minted in it): a fixed-window rate limit per key.
    widget_windows: Mutex<HashMap<String, (i64, i64)>>,
}

impl Inner {
    pub fn new(platform: Platform, config: ImagesConfig, engine: Engine, faces: Faces) -> Self {
        Self {
            platform,
            config,
            engine,
            faces,
            widget_windows: Mutex::new(HashMap::new()),
        }
    }

    fn fetch_policy(&self, allow_list: bool) -> FetchPolicy {
        FetchPolicy {
            allowed_origins: allow_list.then(|| self.config.remote_origins.clone()),
            allow_loopback: self.config.remote_allow_loopback,
            max_bytes: self.config.remote_max_bytes.min(
                self.config
                    .max_upload_bytes
                    .max(self.config.remote_max_bytes),
            ),
            timeout: Duration::from_secs(self.config.remote_timeout_secs.max(1)),
            max_redirects: 3,
        }
    }

    /// Delivery URL of `image` with `variant` (a variant name or flexible options).
    pub fn delivery_url(&self, settings: &Settings, image_id: &str, variant: &str) -> String {
        format!(
            "{}{}/{}/{}/{}",
            self.platform.public_url(),
            self.config.delivery_prefix,
            settings.account_hash,
            image_id,
            variant
        )
    }
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl FromRef<AppState> for Platform {
    fn from_ref(state: &AppState) -> Platform {
        state.0.platform.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let upload_limit = DefaultBodyLimit::max(state.0.config.max_upload_bytes as usize + 64 * 1024);
    let account = "/client/v4/accounts/{account_id}/images";
    let delivery = format!(
        "{}/{{account_hash}}/{{*rest}}",
        state.0.config.delivery_prefix
    );
    Router::new()
        .route(
            &format!("{account}/v1"),
            post(upload::upload_v1)
                .get(images::list_v1)
                .layer(upload_limit),
        )
        .route(&format!("{account}/v2"), get(images::list_v2))
        .route(
            &format!("{account}/v2/direct_upload"),
            post(direct::create_direct_upload),
        )
        .route(&format!("{account}/v1/stats"), get(images::stats))
        .route(
            &format!("{account}/v1/config"),
            get(settings::get_config).patch(settings::patch_config),
        )
        .route(
            &format!("{account}/v1/variants"),
            get(settings::list_variants).post(settings::create_variant),
        )
        .route(
            &format!("{account}/v1/variants/{{name}}"),
            get(settings::get_variant)
                .patch(settings::patch_variant)
                .delete(settings::delete_variant),
        )
        .route(&format!("{account}/v1/keys"), get(settings::list_keys))
        .route(
            &format!("{account}/v1/keys/{{name}}"),
            axum::routing::put(settings::put_key).delete(settings::delete_key),
        )
        .route(
            &format!("{account}/v1/widget_keys"),
            get(settings::list_widget_keys).post(settings::create_widget_key),
        )
        .route(
            &format!("{account}/v1/widget_keys/{{key_id}}"),
            delete(settings::delete_widget_key),
        )
        .route(
            &format!("{account}/v1/{{image_id}}"),
            get(images::get_image)
                .patch(images::patch_image)
                .delete(images::delete_image),
        )
        .route(
            &format!("{account}/v1/{{image_id}}/blob"),
            get(images::blob),
        )
        .route(
            "/images/upload/{token}",
            post(direct::upload_to_url).layer(upload_limit),
        )
        .route(
            "/images/widget/direct_upload",
            post(direct::widget_direct_upload),
        )
        .route("/images/widget.js", get(widget::script))
        .route("/images/widget/demo", get(widget::demo))
        .route(&delivery, get(delivery::deliver))
        .route("/cdn-cgi/image/{options}/{*source}", get(delivery::cdn_cgi))
        .with_state(state)
}

// ---- error codes (stable numbers in the 5400 range, Images-specific) -------------------------

pub fn invalid_option(option: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        5400,
        "invalid_option",
        format!("invalid option {option:?}: {reason}"),
    )
}

pub fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        5401,
        "invalid_request",
        message.into(),
    )
}

pub fn probe_error(e: ProbeError) -> ApiError {
    match e {
        ProbeError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            5413,
            "image_too_large",
            e.to_string(),
        ),
        ProbeError::Unsupported(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            5415,
            "unsupported_image_type",
            e.to_string(),
        ),
        ProbeError::Corrupt(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            5402,
            "invalid_image",
            e.to_string(),
        ),
        ProbeError::Dimensions { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            5414,
            "image_dimensions_too_large",
            e.to_string(),
        ),
    }
}

pub fn transform_error(e: TransformError) -> ApiError {
    match e {
        TransformError::NotSupported(m) => {
            ApiError::new(StatusCode::NOT_IMPLEMENTED, 5501, "not_supported", m)
        }
        TransformError::Decode(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            5422,
            "image_decode_failed",
            m,
        ),
        TransformError::Encode(m) => ApiError::internal(m),
    }
}

pub fn fetch_error(e: FetchError) -> ApiError {
    match &e {
        FetchError::InvalidUrl(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            5403,
            "invalid_source",
            e.to_string(),
        ),
        FetchError::OriginNotAllowed(_) | FetchError::ForbiddenAddress(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            5404,
            "source_forbidden",
            e.to_string(),
        ),
        FetchError::TooLarge(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            5413,
            "image_too_large",
            e.to_string(),
        ),
        FetchError::Upstream(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            5502,
            "source_fetch_failed",
            e.to_string(),
        ),
        FetchError::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            5504,
            "source_timeout",
            e.to_string(),
        ),
    }
}

/// The Cloudflare image object, plus the stored facts (`width`, `height`, `format`, `size`, `sha256`).
pub fn image_json(
    state: &Inner,
    settings: &Settings,
    variants: &[String],
    row: &ImageRow,
) -> serde_json::Value {
    let mut value = json!({
        "id": row.id,
        "filename": row.filename,
        "meta": row.meta,
        "uploaded": rfc3339_from_ms(row.uploaded_at.unwrap_or(row.created_at)),
        "requireSignedURLs": row.require_signed,
        "variants": variants.iter().map(|v| state.delivery_url(settings, &row.id, v)).collect::<Vec<_>>(),
    });
    if row.draft {
        value["draft"] = json!(true);
    } else {
        value["width"] = json!(row.width);
        value["height"] = json!(row.height);
        value["format"] = json!(row.format.map(|f| f.as_str()));
        value["size"] = json!(row.size_bytes);
        value["sha256"] = json!(row.sha256);
        value["animated"] = json!(row.animated);
    }
    value
}

/// `metadata` must be a JSON object of at most 1024 bytes.
pub fn parse_metadata(text: Option<&str>) -> Result<serde_json::Value, ApiError> {
    match text {
        None => Ok(json!({})),
        Some(text) if text.trim().is_empty() => Ok(json!({})),
        Some(text) => {
            if text.len() > 1024 {
                return Err(invalid_request(format!(
                    "metadata is {} bytes; the limit is 1024",
                    text.len()
                )));
            }
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| invalid_request(format!("metadata is not JSON: {e}")))?;
            if !value.is_object() {
                return Err(invalid_request("metadata must be a JSON object"));
            }
            Ok(value)
        }
    }
}

pub fn parse_bool(name: &str, text: &str) -> Result<bool, ApiError> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(invalid_request(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

/// A client-chosen image id: safe characters only, never a UUID-shaped one we could issue.
pub fn check_custom_id(id: &str) -> Result<(), ApiError> {
    if !platform::ids::is_safe_client_id(id) || id.len() > 1024 {
        return Err(invalid_request(
            "id: 1 to 1024 characters of A-Z a-z 0-9 . _ ~ - and inner /",
        ));
    }
    if id.len() == 36
        && id.bytes().filter(|b| *b == b'-').count() == 4
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        return Err(invalid_request(
            "id: UUID-shaped ids are reserved for ids the service issues",
        ));
    }
    Ok(())
}
