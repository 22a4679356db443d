//! Per-account settings: the delivery config (account hash, flexible variants), variants,
//! signing keys and publishable widget keys.

use axum::{
    extract::{Path, State},
    Json,
};
use platform::{
    auth::{Caller, Scope},
    error::envelope,
    ApiError,
};
use serde::Deserialize;
use serde_json::json;

use super::{invalid_request, AppState};
use crate::{
    store::{self, VariantRow, WidgetKey},
    transform::{
        options::{Fit, MAX_OUTPUT_SIDE},
        TransformOptions,
    },
};

type JsonResult = Result<Json<serde_json::Value>, ApiError>;
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| invalid_request(e.body_text()))
}

pub async fn get_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesRead)?;
    let settings = store::settings(&state.0.platform.db, &account_id).await?;
    Ok(envelope(json!({
        "flexible_variants": settings.flexible_variants,
        "account_hash": settings.account_hash,
        "delivery_url_prefix": format!("{}{}/{}", state.0.platform.public_url(), state.0.config.delivery_prefix, settings.account_hash),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConfig {
    flexible_variants: bool,
}

pub async fn patch_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    b: Body<PatchConfig>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let b = body(b)?;
    store::set_flexible_variants(&state.0.platform.db, &account_id, b.flexible_variants).await?;
    get_config(State(state), caller, Path(account_id)).await
}

// ---- variants -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantOptions {
    fit: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    metadata: Option<String>,
    /// Extension to Cloudflare's variant options: `gravity` (as in /cdn-cgi/image) and `zoom` (0–1).
    gravity: Option<String>,
    zoom: Option<f32>,
}

/// Checks variant options and returns them in stored form.
fn check_options(o: &VariantOptions) -> Result<serde_json::Value, ApiError> {
    let fit = o.fit.as_deref().unwrap_or("scale-down");
    if Fit::parse(fit).is_none() {
        return Err(invalid_request(
            "options.fit must be scale-down, contain, cover, crop, pad or squeeze",
        ));
    }
    for (name, v) in [("width", o.width), ("height", o.height)] {
        if v.is_some_and(|v| v == 0 || v > MAX_OUTPUT_SIDE) {
            return Err(invalid_request(format!(
                "options.{name} must be between 1 and {MAX_OUTPUT_SIDE}"
            )));
        }
    }
    let metadata = o.metadata.as_deref().unwrap_or("none");
    if !matches!(metadata, "keep" | "copyright" | "none") {
        return Err(invalid_request(
            "options.metadata must be keep, copyright or none",
        ));
    }
    let mut value = json!({ "fit": fit, "metadata": metadata });
    if let Some(w) = o.width {
        value["width"] = json!(w);
    }
    if let Some(h) = o.height {
        value["height"] = json!(h);
    }
    if let Some(g) = &o.gravity {
        TransformOptions::parse(&format!("gravity={g}"))
            .map_err(|e| invalid_request(format!("options.gravity: {}", e.reason)))?;
        value["gravity"] = json!(g);
    }
    if let Some(z) = o.zoom {
        if !(0.0..=1.0).contains(&z) {
            return Err(invalid_request("options.zoom must be between 0 and 1"));
        }
        value["zoom"] = json!(z);
    }
    Ok(value)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 99 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid_request("variant id: 1 to 99 letters and digits"));
    }
    Ok(())
}

fn variant_json(v: &VariantRow) -> serde_json::Value {
    json!({ "id": v.name, "options": v.options, "neverRequireSignedURLs": v.never_require_signed })
}

pub async fn list_variants(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesRead)?;
    let variants = store::list_variants(&state.0.platform.db, &account_id).await?;
    let map: serde_json::Map<String, serde_json::Value> = variants
        .iter()
        .map(|v| (v.name.clone(), variant_json(v)))
        .collect();
    Ok(envelope(json!({ "variants": map })))
}

pub async fn get_variant(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, name)): Path<(String, String)>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesRead)?;
    let v = store::get_variant(&state.0.platform.db, &account_id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("variant"))?;
    Ok(envelope(json!({ "variant": variant_json(&v) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVariant {
    id: String,
    options: VariantOptions,
    #[serde(rename = "neverRequireSignedURLs", default)]
    never_require_signed: bool,
}

pub async fn create_variant(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    b: Body<CreateVariant>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let b = body(b)?;
    check_name(&b.id)?;
    let options = check_options(&b.options)?;
    let db = &state.0.platform.db;
    if store::count_variants(db, &account_id).await? >= 100 {
        return Err(invalid_request("an account may have at most 100 variants"));
    }
    let v = VariantRow {
        name: b.id,
        options,
        never_require_signed: b.never_require_signed,
    };
    if !store::put_variant(db, &account_id, &v, true).await? {
        return Err(ApiError::conflict(format!(
            "variant {:?} already exists",
            v.name
        )));
    }
    Ok(envelope(json!({ "variant": variant_json(&v) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchVariant {
    options: Option<VariantOptions>,
    #[serde(rename = "neverRequireSignedURLs")]
    never_require_signed: Option<bool>,
}

pub async fn patch_variant(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, name)): Path<(String, String)>,
    b: Body<PatchVariant>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let b = body(b)?;
    let db = &state.0.platform.db;
    let mut v = store::get_variant(db, &account_id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("variant"))?;
    if let Some(options) = &b.options {
        v.options = check_options(options)?;
    }
    if let Some(flag) = b.never_require_signed {
        v.never_require_signed = flag;
    }
    store::put_variant(db, &account_id, &v, false).await?;
    Ok(envelope(json!({ "variant": variant_json(&v) })))
}

pub async fn delete_variant(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, name)): Path<(String, String)>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    if !store::delete_variant(&state.0.platform.db, &account_id, &name).await? {
        return Err(ApiError::not_found("variant"));
    }
    Ok(envelope(json!({})))
}

// ---- signing keys ---------------------------------------------------------------------------

async fn keys_json(state: &AppState, account_id: &str) -> JsonResult {
    let keys = store::signing_keys(&state.0.platform.db, account_id).await?;
    Ok(envelope(
        json!({ "keys": keys.into_iter().map(|(name, value)| json!({ "name": name, "value": value })).collect::<Vec<_>>() }),
    ))
}

pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    keys_json(&state, &account_id).await
}

pub async fn put_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, name)): Path<(String, String)>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid_request("key name: 1 to 64 of A-Z a-z 0-9 - _"));
    }
    store::put_signing_key(&state.0.platform.db, &account_id, &name).await?;
    keys_json(&state, &account_id).await
}

pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, name)): Path<(String, String)>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    if !store::delete_signing_key(&state.0.platform.db, &account_id, &name).await? {
        return Err(ApiError::not_found("signing key"));
    }
    keys_json(&state, &account_id).await
}

// ---- widget keys ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWidgetKey {
    name: String,
    allowed_origins: Vec<String>,
    uploads_per_minute: Option<i64>,
    max_file_bytes: Option<i64>,
}

pub async fn create_widget_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    b: Body<CreateWidgetKey>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let b = body(b)?;
    if b.name.trim().is_empty() || b.name.len() > 200 {
        return Err(invalid_request("name: 1 to 200 characters"));
    }
    if b.allowed_origins.is_empty() || b.allowed_origins.len() > 50 {
        return Err(invalid_request(
            "allowedOrigins: 1 to 50 origins like https://example.com",
        ));
    }
    let mut origins = Vec::new();
    for origin in &b.allowed_origins {
        let normalized = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let host = normalized
            .strip_prefix("https://")
            .or_else(|| normalized.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.contains('/') || h.contains('*')) {
            return Err(invalid_request(format!(
                "allowedOrigins: {origin:?} is not an origin like https://example.com"
            )));
        }
        origins.push(normalized);
    }
    let per_minute = b.uploads_per_minute.unwrap_or(30);
    if !(1..=10_000).contains(&per_minute) {
        return Err(invalid_request(
            "uploadsPerMinute must be between 1 and 10000",
        ));
    }
    let max_file = b
        .max_file_bytes
        .unwrap_or(state.0.config.max_upload_bytes as i64);
    if max_file < 1 || max_file as u64 > state.0.config.max_upload_bytes {
        return Err(invalid_request(format!(
            "maxFileBytes must be between 1 and {}",
            state.0.config.max_upload_bytes
        )));
    }
    let key = WidgetKey {
        id: format!("pk_{}", platform::ids::new_secret(18)),
        account_id: account_id.clone(),
        name: b.name.trim().to_string(),
        allowed_origins: origins,
        uploads_per_minute: per_minute,
        max_file_bytes: max_file,
    };
    store::insert_widget_key(&state.0.platform.db, &key).await?;
    Ok(envelope(json!(key)))
}

pub async fn list_widget_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesRead)?;
    Ok(envelope(json!(
        store::list_widget_keys(&state.0.platform.db, &account_id).await?
    )))
}

pub async fn delete_widget_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, key_id)): Path<(String, String)>,
) -> JsonResult {
    caller.require(&account_id, Scope::ImagesWrite)?;
    if !store::delete_widget_key(&state.0.platform.db, &account_id, &key_id).await? {
        return Err(ApiError::not_found("widget key"));
    }
    Ok(envelope(json!({})))
}
