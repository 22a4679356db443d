//! List, get, patch, delete, blob and stats of stored images.

use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine as _;
use platform::{
    auth::{Caller, Scope},
    error::{envelope, envelope_paged},
    ApiError,
};
use serde::Deserialize;
use serde_json::json;

use super::{image_json, invalid_request, parse_metadata, AppState};
use crate::store::{self, ImageRow};

async fn variant_names(state: &super::Inner, account_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(store::list_variants(&state.platform.db, account_id)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect())
}

#[derive(Deserialize)]
pub struct ListV2 {
    continuation_token: Option<String>,
    per_page: Option<i64>,
    sort_order: Option<String>,
}

fn encode_cursor(row: &ImageRow) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{}", row.created_at, row.id))
}

fn decode_cursor(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || invalid_request("continuation_token is not one this API issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (created, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((created.parse().map_err(|_| bad())?, id.to_string()))
}

pub async fn list_v2(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    query: Result<Query<ListV2>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesRead)?;
    let Query(query) = query?;
    let state = &state.0;
    let per_page = query.per_page.unwrap_or(1000);
    if !(10..=10_000).contains(&per_page) {
        return Err(invalid_request("per_page must be between 10 and 10000"));
    }
    let descending = match query.sort_order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(invalid_request("sort_order must be asc or desc")),
    };
    let after = query
        .continuation_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(decode_cursor)
        .transpose()?;
    store::purge_expired_drafts(&state.platform.db, &account_id).await?;
    let mut rows = store::list_images(
        &state.platform.db,
        &account_id,
        after,
        per_page + 1,
        descending,
    )
    .await?;
    let more = rows.len() as i64 > per_page;
    rows.truncate(per_page as usize);
    let token = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    let settings = store::settings(&state.platform.db, &account_id).await?;
    let variants = variant_names(state, &account_id).await?;
    let images: Vec<_> = rows
        .iter()
        .map(|r| image_json(state, &settings, &variants, r))
        .collect();
    Ok(envelope(
        json!({ "images": images, "continuation_token": token }),
    ))
}

#[derive(Deserialize)]
pub struct ListV1 {
    page: Option<i64>,
    per_page: Option<i64>,
}

/// The older paged list (`page`, `per_page` ≤ 100), oldest first.
pub async fn list_v1(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    query: Result<Query<ListV1>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesRead)?;
    let Query(query) = query?;
    let state = &state.0;
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(50);
    if page < 1 || !(1..=100).contains(&per_page) {
        return Err(invalid_request(
            "page must be ≥ 1 and per_page between 1 and 100",
        ));
    }
    store::purge_expired_drafts(&state.platform.db, &account_id).await?;
    // Walk with the keyset cursor; pages beyond the first are rare in this older API.
    let mut after = None;
    let mut rows = Vec::new();
    for _ in 0..page {
        rows = store::list_images(
            &state.platform.db,
            &account_id,
            after.clone(),
            per_page,
            false,
        )
        .await?;
        after = rows.last().map(|r| (r.created_at, r.id.clone()));
        if rows.is_empty() {
            break;
        }
    }
    let settings = store::settings(&state.platform.db, &account_id).await?;
    let variants = variant_names(state, &account_id).await?;
    let images: Vec<_> = rows
        .iter()
        .map(|r| image_json(state, &settings, &variants, r))
        .collect();
    Ok(envelope_paged(
        json!({ "images": images }),
        json!({ "page": page, "per_page": per_page, "count": images.len() }),
    ))
}

pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesRead)?;
    let current = store::count_images(&state.0.platform.db, &account_id).await?;
    Ok(envelope(
        json!({ "count": { "current": current, "allowed": state.0.config.max_images } }),
    ))
}

pub async fn load(
    state: &super::Inner,
    account_id: &str,
    image_id: &str,
) -> Result<ImageRow, ApiError> {
    let row = store::get_image(&state.platform.db, account_id, image_id)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    if row.draft
        && row
            .upload_expires_at
            .is_some_and(|t| t <= platform::time_util::now_ms())
    {
        store::purge_expired_drafts(&state.platform.db, account_id).await?;
        return Err(ApiError::not_found("image"));
    }
    Ok(row)
}

pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, image_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesRead)?;
    let state = &state.0;
    let row = load(state, &account_id, &image_id).await?;
    let settings = store::settings(&state.platform.db, &account_id).await?;
    let variants = variant_names(state, &account_id).await?;
    Ok(envelope(image_json(state, &settings, &variants, &row)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchImage {
    metadata: Option<serde_json::Value>,
    #[serde(rename = "requireSignedURLs")]
    require_signed: Option<bool>,
}

pub async fn patch_image(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, image_id)): Path<(String, String)>,
    body: Result<Json<PatchImage>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let Json(body) = body.map_err(|e| invalid_request(e.body_text()))?;
    let state = &state.0;
    let row = load(state, &account_id, &image_id).await?;
    let meta = body
        .metadata
        .as_ref()
        .map(|m| parse_metadata(Some(&m.to_string())))
        .transpose()?;
    if body.require_signed == Some(true) && row.custom_id {
        return Err(invalid_request(
            "images with a custom id cannot require signed URLs",
        ));
    }
    store::update_image(
        &state.platform.db,
        &account_id,
        &image_id,
        meta.as_ref(),
        body.require_signed,
    )
    .await?;
    let row = load(state, &account_id, &image_id).await?;
    let settings = store::settings(&state.platform.db, &account_id).await?;
    let variants = variant_names(state, &account_id).await?;
    Ok(envelope(image_json(state, &settings, &variants, &row)))
}

/// Deletes the row first (so nothing new is served), then the original and every derivative.
pub async fn delete_image(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, image_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let state = &state.0;
    let row = store::get_image(&state.platform.db, &account_id, &image_id)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    store::delete_image(&state.platform.db, &account_id, &image_id).await?;
    let removed = state
        .platform
        .storage
        .delete_prefix(&row.object_prefix()?)
        .await?;
    tracing::info!(account_id = %account_id, image_id = %image_id, objects = removed, "image deleted");
    Ok(envelope(json!({})))
}

pub async fn blob(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, image_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&account_id, Scope::ImagesRead)?;
    let state = &state.0;
    let row = load(state, &account_id, &image_id).await?;
    let (Some(object), Some(format)) = (row.original_object.as_deref(), row.format) else {
        return Err(ApiError::not_found(
            "image file (the upload has not happened yet)",
        ));
    };
    let key = platform::ObjectKey::new(&[object])?;
    let data = state
        .platform
        .storage
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::internal("original missing from storage"))?;
    Ok((
        [
            (header::CONTENT_TYPE, format.mime()),
            (header::CACHE_CONTROL, "private, max-age=0"),
        ],
        data,
    )
        .into_response())
}
