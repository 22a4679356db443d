//! `POST /images/v1`: upload by multipart `file` or by `url`, and the ingest steps shared with
//! direct uploads (read the multipart form with a size cap, validate, store the original).

use axum::{
    extract::{Multipart, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use platform::{
    auth::{Caller, Scope},
    error::envelope,
    ApiError, Metric, ObjectKey,
};
use sha2::{Digest, Sha256};

use super::{
    check_custom_id, fetch_error, image_json, invalid_request, parse_bool, parse_metadata,
    probe_error, AppState, Inner,
};
use crate::{
    store::{self, NewImage, StoredOriginal},
    transform::{self, Probe},
};

/// The fields of an upload form.
#[derive(Default)]
pub struct UploadForm {
    pub file: Option<(Bytes, Option<String>)>,
    pub url: Option<String>,
    pub metadata: Option<String>,
    pub require_signed: Option<String>,
    pub id: Option<String>,
    pub expiry: Option<String>,
}

/// Reads a multipart form, refusing a file above `max_bytes` without buffering more of it.
pub async fn read_form(mut multipart: Multipart, max_bytes: u64) -> Result<UploadForm, ApiError> {
    let mut form = UploadForm::default();
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            probe_error(transform::ProbeError::TooLarge {
                size: max_bytes + 1,
                limit: max_bytes,
            })
        } else {
            invalid_request(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let filename = field.file_name().map(|f| {
                f.chars()
                    .filter(|c| !c.is_control())
                    .take(255)
                    .collect::<String>()
            });
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if data.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(probe_error(transform::ProbeError::TooLarge {
                        size: data.len() as u64 + chunk.len() as u64,
                        limit: max_bytes,
                    }));
                }
                data.extend_from_slice(&chunk);
            }
            form.file = Some((Bytes::from(data), filename));
            continue;
        }
        let text = field.text().await.map_err(malformed)?;
        if text.len() > 8192 {
            return Err(invalid_request(format!("field {name:?} is too long")));
        }
        match name.as_str() {
            "url" => form.url = Some(text),
            "metadata" => form.metadata = Some(text),
            "requireSignedURLs" => form.require_signed = Some(text),
            "id" => form.id = Some(text),
            "expiry" => form.expiry = Some(text),
            _ => {}
        }
    }
    Ok(form)
}

/// A validated original, stored under a fresh object key.
pub struct Ingested {
    pub object: ObjectKey,
    pub probe: Probe,
    pub size: i64,
    pub sha256: String,
}

impl Ingested {
    pub fn as_stored(&self) -> StoredOriginal<'_> {
        StoredOriginal {
            object: &self.object,
            probe: &self.probe,
            size: self.size,
            sha256: &self.sha256,
        }
    }
}

/// Validates `data` (header limits first, then a full decode on the CPU pool) and stores it.
pub async fn ingest(
    state: &Inner,
    account_id: &str,
    storage_uid: &str,
    data: Bytes,
) -> Result<Ingested, ApiError> {
    let limits = state.config.source_limits();
    let checked = data.clone();
    let (probe, sha256) = state
        .engine
        .cpu(move || -> Result<(Probe, String), transform::ProbeError> {
            let probe = transform::probe(&checked, &limits)?;
            transform::probe::verify_decodes(&checked, &probe)?;
            Ok((probe, hex::encode(Sha256::digest(&checked))))
        })
        .await?
        .map_err(probe_error)?;
    let object = store::new_original_key(account_id, storage_uid)?;
    let size = data.len() as i64;
    state.platform.storage.put(&object, data).await?;
    Ok(Ingested {
        object,
        probe,
        size,
        sha256,
    })
}

pub async fn upload_v1(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    caller.require(&account_id, Scope::ImagesWrite)?;
    let multipart = multipart.map_err(|e| {
        invalid_request(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let state = &state.0;
    let form = read_form(multipart, state.config.max_upload_bytes).await?;
    let meta = parse_metadata(form.metadata.as_deref())?;
    let require_signed = form
        .require_signed
        .as_deref()
        .map(|v| parse_bool("requireSignedURLs", v))
        .transpose()?
        .unwrap_or(false);
    let custom = form
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    if let Some(id) = custom {
        check_custom_id(id)?;
        if require_signed {
            return Err(invalid_request(
                "images with a custom id cannot require signed URLs",
            ));
        }
    }
    let current = store::count_images(&state.platform.db, &account_id).await?;
    if current as u64 >= state.config.max_images {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            5405,
            "image_quota_exceeded",
            format!("the account stores {current} images, the limit"),
        ));
    }
    let (data, filename) = match (form.file, form.url) {
        (Some(_), Some(_)) => return Err(invalid_request("send either file or url, not both")),
        (None, None) => return Err(invalid_request("a file or url field is required")),
        (Some((data, filename)), None) => (data, filename),
        (None, Some(url)) => {
            let (data, final_url) = crate::fetch::fetch(url.trim(), &state.fetch_policy(false))
                .await
                .map_err(fetch_error)?;
            let name = final_url
                .path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
                .filter(|s| !s.is_empty());
            (data, name)
        }
    };
    let id = custom
        .map(str::to_string)
        .unwrap_or_else(platform::ids::new_uuid);
    if store::get_image(&state.platform.db, &account_id, &id)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            5409,
            "image_id_taken",
            format!("an image with id {id:?} already exists"),
        ));
    }
    let storage_uid = platform::ids::new_uid();
    let ingested = ingest(state, &account_id, &storage_uid, data).await?;
    let new = NewImage {
        account_id: &account_id,
        id: &id,
        custom_id: custom.is_some(),
        filename: filename.as_deref(),
        meta: &meta,
        require_signed,
    };
    let inserted = match store::insert_image(
        &state.platform.db,
        &new,
        &storage_uid,
        &ingested.as_stored(),
    )
    .await
    {
        Ok(inserted) => inserted,
        Err(e) => {
            let _ = state.platform.storage.delete(&ingested.object).await;
            return Err(e.into());
        }
    };
    if !inserted {
        // Lost a race for the same custom id: leave nothing behind.
        let _ = state.platform.storage.delete(&ingested.object).await;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            5409,
            "image_id_taken",
            format!("an image with id {id:?} already exists"),
        ));
    }
    state
        .platform
        .meter
        .record(&account_id, Metric::ImagesStored, 1.0);
    tracing::info!(account_id = %account_id, image_id = %id, format = ingested.probe.format.as_str(), width = ingested.probe.width, height = ingested.probe.height, "image uploaded");
    let row = store::get_image(&state.platform.db, &account_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal("image vanished after insert"))?;
    let settings = store::settings(&state.platform.db, &account_id).await?;
    let variants: Vec<String> = store::list_variants(&state.platform.db, &account_id)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok((
        StatusCode::OK,
        envelope(image_json(state, &settings, &variants, &row)),
    )
        .into_response())
}
