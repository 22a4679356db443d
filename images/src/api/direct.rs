//! Direct creator uploads: the account mints a one-time `uploadURL` (a draft image until used);
//! the browser posts the file there without any account credentials. The widget endpoint mints
//! the same URLs for a publishable widget key, checked against its allowed origins and rate.

use axum::{
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use platform::{
    auth::{Caller, Scope},
    error::envelope,
    time_util::{now_ms, parse_time_ms},
    ApiError, Metric,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    check_custom_id, image_json, invalid_request, parse_bool, parse_metadata, upload, AppState,
    Inner,
};
use crate::store::{self, NewImage};

const MIN_EXPIRY_MS: i64 = 2 * 60_000;
const MAX_EXPIRY_MS: i64 = 6 * 3_600_000;
const DEFAULT_EXPIRY_MS: i64 = 30 * 60_000;

#[derive(Deserialize, Default)]
struct DirectUploadJson {
    expiry: Option<String>,
    metadata: Option<serde_json::Value>,
    #[serde(rename = "requireSignedURLs")]
    require_signed: Option<bool>,
    id: Option<String>,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

struct DraftRequest {
    expires_at: i64,
    meta: serde_json::Value,
    require_signed: bool,
    id: Option<String>,
}

fn parse_expiry(text: Option<&str>) -> Result<i64, ApiError> {
    let now = now_ms();
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(now + DEFAULT_EXPIRY_MS);
    };
    let at =
        parse_time_ms(text).ok_or_else(|| invalid_request("expiry must be an RFC 3339 time"))?;
    if at < now + MIN_EXPIRY_MS || at > now + MAX_EXPIRY_MS {
        return Err(invalid_request(
            "expiry must be between 2 minutes and 6 hours from now",
        ));
    }
    Ok(at)
}

/// Creates the draft and returns `{id, uploadURL}`.
async fn mint(
    state: &Inner,
    account_id: &str,
    request: DraftRequest,
) -> Result<serde_json::Value, ApiError> {
    if let Some(id) = &request.id {
        check_custom_id(id)?;
        if request.require_signed {
            return Err(invalid_request(
                "images with a custom id cannot require signed URLs",
            ));
        }
    }
    let id = request.id.clone().unwrap_or_else(platform::ids::new_uuid);
    let token = platform::ids::new_secret(32);
    let new = NewImage {
        account_id,
        id: &id,
        custom_id: request.id.is_some(),
        filename: None,
        meta: &request.meta,
        require_signed: request.require_signed,
    };
    store::purge_expired_drafts(&state.platform.db, account_id).await?;
    if !store::insert_draft(
        &state.platform.db,
        &new,
        &platform::ids::new_uid(),
        &token_hash(&token),
        request.expires_at,
    )
    .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            5409,
            "image_id_taken",
            format!("an image with id {id:?} already exists"),
        ));
    }
    tracing::info!(account_id = %account_id, image_id = %id, "direct upload URL minted");
    Ok(
        json!({ "id": id, "uploadURL": format!("{}/images/upload/{}", state.platform.public_url(), token) }),
    )
}

pub async fn create_direct_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let draft = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| invalid_request(e.body_text()))?;
        let form = upload::read_form(multipart, 0).await?;
        DraftRequest {
            expires_at: parse_expiry(form.expiry.as_deref())?,
            meta: parse_metadata(form.metadata.as_deref())?,
            require_signed: form
                .require_signed
                .as_deref()
                .map(|v| parse_bool("requireSignedURLs", v))
                .transpose()?
                .unwrap_or(false),
            id: form.id.filter(|id| !id.trim().is_empty()),
        }
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
            .await
            .map_err(|_| invalid_request("body too large"))?;
        let body: DirectUploadJson = if bytes.is_empty() {
            Default::default()
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| invalid_request(format!("invalid JSON body: {e}")))?
        };
        DraftRequest {
            expires_at: parse_expiry(body.expiry.as_deref())?,
            meta: parse_metadata(body.metadata.as_ref().map(|m| m.to_string()).as_deref())?,
            require_signed: body.require_signed.unwrap_or(false),
            id: body.id.filter(|id| !id.trim().is_empty()),
        }
    };
    Ok(envelope(mint(&state.0, &account_id, draft).await?))
}

fn upload_url_used() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        5406,
        "upload_url_used",
        "this upload URL was already used",
    )
}
fn upload_url_expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        5407,
        "upload_url_expired",
        "this upload URL has expired",
    )
}

/// `POST /images/upload/{token}` (no auth: the token is the credential, usable once).
pub async fn upload_to_url(
    State(state): State<AppState>,
    Path(token): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let hash = token_hash(&token);
    let draft = store::draft_by_token(&state.platform.db, &hash)
        .await?
        .ok_or_else(|| ApiError::not_found("upload URL"))?;
    if !draft.draft {
        return Err(upload_url_used());
    }
    if draft.upload_expires_at.is_some_and(|t| t <= now_ms()) {
        store::purge_expired_drafts(&state.platform.db, &draft.account_id).await?;
        return Err(upload_url_expired());
    }
    let multipart = multipart.map_err(|e| {
        invalid_request(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let form = upload::read_form(multipart, state.config.max_upload_bytes).await?;
    let Some((data, filename)) = form.file else {
        return Err(invalid_request("a file field is required"));
    };
    // Validation failures return here, before anything is stored: the URL stays usable for a retry.
    let ingested = upload::ingest(state, &draft.account_id, &draft.storage_uid, data).await?;
    if !store::complete_draft(
        &state.platform.db,
        &hash,
        filename.as_deref(),
        &ingested.as_stored(),
    )
    .await?
    {
        // Another upload won, or the URL expired meanwhile: remove what we stored.
        let _ = state.platform.storage.delete(&ingested.object).await;
        let now = store::draft_by_token(&state.platform.db, &hash).await?;
        return Err(match now {
            Some(row) if !row.draft => upload_url_used(),
            _ => upload_url_expired(),
        });
    }
    state
        .platform
        .meter
        .record(&draft.account_id, Metric::ImagesStored, 1.0);
    tracing::info!(account_id = %draft.account_id, image_id = %draft.id, "direct upload completed");
    let row = store::get_image(&state.platform.db, &draft.account_id, &draft.id)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let settings = store::settings(&state.platform.db, &draft.account_id).await?;
    let variants: Vec<String> = store::list_variants(&state.platform.db, &draft.account_id)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(envelope(image_json(state, &settings, &variants, &row)).into_response())
}

#[derive(Deserialize)]
pub struct WidgetQuery {
    key: Option<String>,
}

/// `POST /images/widget/direct_upload` with a publishable key (`X-Widget-Key` header or `?key=`):
/// the request's `Origin` must be one the key allows; minting is rate-limited per key.
pub async fn widget_direct_upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WidgetQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = &state.0;
    let key_id = headers
        .get("x-widget-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.key)
        .ok_or_else(|| ApiError::forbidden("a widget key is required"))?;
    let key = store::widget_key(&state.platform.db, key_id.trim())
        .await?
        .ok_or_else(|| ApiError::forbidden("unknown widget key"))?;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if !key.allowed_origins.contains(&origin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            5408,
            "origin_not_allowed",
            format!("origin {origin:?} may not use this widget key"),
        ));
    }
    let minute = now_ms() / 60_000;
    {
        let mut windows = state
            .widget_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let window = windows.entry(key.id.clone()).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= key.uploads_per_minute {
            return Err(ApiError::too_many_requests(
                "this widget key's upload rate was exceeded; retry in a minute",
            ));
        }
        window.1 += 1;
    }
    let draft = DraftRequest {
        expires_at: now_ms() + DEFAULT_EXPIRY_MS,
        meta: json!({ "source": "widget", "widgetKey": key.id }),
        require_signed: false,
        id: None,
    };
    let mut result = mint(state, &key.account_id, draft).await?;
    result["maxFileBytes"] = json!(key.max_file_bytes.min(state.config.max_upload_bytes as i64));
    Ok(envelope(result))
}
