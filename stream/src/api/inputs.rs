//! Live inputs: create/list/get/update/delete and secret rotation.

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use platform::{
    auth::{Caller, Scope},
    error::{envelope, ApiResult},
    ids,
    time_util::{now_ms, rfc3339_from_ms},
    ApiError,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    store::{self, LiveInputRow},
    AppState,
};

const MAX_META_BYTES: usize = 8192;
const MAX_TIMEOUT_SECONDS: i64 = 3600;
/// Cloudflare's minimum retention for recordings.
const MIN_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingBody {
    mode: Option<String>,
    timeout_seconds: Option<i64>,
    #[serde(rename = "requireSignedURLs")]
    require_signed_urls: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    allowed_origins: Option<Option<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputBody {
    meta: Option<Value>,
    recording: Option<RecordingBody>,
    #[serde(default, deserialize_with = "present")]
    delete_recording_after_days: Option<Option<i64>>,
    enabled: Option<bool>,
}

/// Tells an explicit `null` (`Some(None)`: clear it) from a missing field (`None`: keep it).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Applies the fields present in `body` to `row`, validating each.
fn apply(row: &mut LiveInputRow, body: InputBody) -> ApiResult<()> {
    if let Some(meta) = body.meta {
        if !meta.is_object() {
            return Err(ApiError::bad_request("meta must be a JSON object"));
        }
        if meta.to_string().len() > MAX_META_BYTES {
            return Err(ApiError::bad_request(format!(
                "meta may be at most {MAX_META_BYTES} bytes"
            )));
        }
        row.meta = meta;
    }
    if let Some(recording) = body.recording {
        if let Some(mode) = recording.mode {
            if mode != "off" && mode != "automatic" {
                return Err(ApiError::bad_request(
                    "recording.mode must be \"off\" or \"automatic\"",
                ));
            }
            row.recording_mode = mode;
        }
        if let Some(timeout) = recording.timeout_seconds {
            if !(0..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
                return Err(ApiError::bad_request(format!(
                    "recording.timeoutSeconds must be 0..={MAX_TIMEOUT_SECONDS}"
                )));
            }
            row.timeout_seconds = timeout;
        }
        if let Some(signed) = recording.require_signed_urls {
            // Signed playback tokens are not implemented: accepting `true` would promise a
            // protection that is not there.
            if signed {
                return Err(ApiError::bad_request(
                    "recording.requireSignedURLs: signed playback URLs are not supported yet; \
                     use allowedOrigins (playback ids are unguessable)",
                ));
            }
            row.require_signed_urls = signed;
        }
        if let Some(origins) = recording.allowed_origins {
            row.allowed_origins = origins
                .map(|list| crate::origins::validate(&list))
                .transpose()
                .map_err(ApiError::bad_request)?;
        }
    }
    if let Some(days) = body.delete_recording_after_days {
        if days.is_some_and(|d| !(MIN_RETENTION_DAYS..=36_500).contains(&d)) {
            return Err(ApiError::bad_request(format!(
                "deleteRecordingAfterDays must be {MIN_RETENTION_DAYS}..=36500 or null"
            )));
        }
        row.delete_recording_after_days = days;
    }
    if let Some(enabled) = body.enabled {
        row.enabled = enabled;
    }
    Ok(())
}

pub fn input_json(state: &AppState, row: &LiveInputRow) -> Value {
    let base = state.platform.public_url();
    let status = state.broadcasts.status(&row.uid).map(|live| {
        json!({
            "current": { "state": if live.connected { "connected" } else { "disconnected" }, "videoUID": live.video_id }
        })
    });
    json!({
        "uid": row.uid,
        "created": rfc3339_from_ms(row.created_ms),
        "modified": rfc3339_from_ms(row.modified_ms),
        "meta": row.meta,
        "recording": {
            "mode": row.recording_mode,
            "timeoutSeconds": row.timeout_seconds,
            "requireSignedURLs": row.require_signed_urls,
            "allowedOrigins": row.allowed_origins,
        },
        "deleteRecordingAfterDays": row.delete_recording_after_days,
        "enabled": row.enabled,
        "status": status,
        "webRTC": { "url": format!("{base}/stream/{}/webRTC/publish", row.secret) },
        "webRTCPlayback": { "url": format!("{base}/stream/{}/webRTC/play", row.uid) },
        "playback": { "hls": format!("{base}/stream/{}/manifest/video.m3u8", row.uid) },
    })
}

fn parse_body(body: Result<Json<Value>, JsonRejection>) -> ApiResult<InputBody> {
    let Json(value) = body?;
    if value.is_null() {
        return Ok(InputBody::default());
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid live input: {e}")))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    caller.require(&account_id, Scope::StreamWrite)?;
    let body = parse_body(body)?;
    let now = now_ms();
    let mut row = LiveInputRow {
        uid: ids::new_uid(),
        account_id: account_id.clone(),
        meta: json!({}),
        recording_mode: "off".into(),
        timeout_seconds: 0,
        require_signed_urls: false,
        allowed_origins: None,
        delete_recording_after_days: None,
        enabled: true,
        secret: ids::new_secret(24),
        created_ms: now,
        modified_ms: now,
    };
    apply(&mut row, body)?;
    store::insert_input(&state.platform.db, &row).await?;
    tracing::info!(input = %row.uid, %account_id, "live input created");
    Ok((
        axum::http::StatusCode::CREATED,
        envelope(input_json(&state, &row)),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamRead)?;
    let rows = store::list_inputs(&state.platform.db, &account_id).await?;
    let inputs: Vec<Value> = rows.iter().map(|r| input_json(&state, r)).collect();
    Ok(envelope(
        json!({ "liveInputs": inputs, "range": inputs.len(), "total": inputs.len() }),
    ))
}

pub(crate) async fn load(
    state: &AppState,
    account_id: &str,
    input_id: &str,
) -> ApiResult<LiveInputRow> {
    store::get_input(&state.platform.db, account_id, input_id)
        .await?
        .ok_or_else(|| ApiError::not_found("live input"))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, input_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamRead)?;
    let row = load(&state, &account_id, &input_id).await?;
    Ok(envelope(input_json(&state, &row)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, input_id)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamWrite)?;
    let body = parse_body(body)?;
    let mut row = load(&state, &account_id, &input_id).await?;
    apply(&mut row, body)?;
    row.modified_ms = now_ms();
    store::update_input(&state.platform.db, &row).await?;
    Ok(envelope(input_json(&state, &row)))
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, input_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamWrite)?;
    let mut row = load(&state, &account_id, &input_id).await?;
    row.secret = ids::new_secret(24);
    row.modified_ms = now_ms();
    store::update_input(&state.platform.db, &row).await?;
    tracing::info!(input = %row.uid, "WHIP secret rotated");
    Ok(envelope(input_json(&state, &row)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, input_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamWrite)?;
    if state
        .broadcasts
        .status(&input_id)
        .is_some_and(|s| s.connected)
    {
        return Err(ApiError::conflict(
            "the live input is being published; end the broadcast first",
        ));
    }
    if !store::delete_input(&state.platform.db, &account_id, &input_id).await? {
        return Err(ApiError::not_found("live input"));
    }
    Ok(envelope(Value::Null))
}
