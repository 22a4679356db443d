//! Videos (recordings of broadcasts): list, get, delete.

use axum::{
    extract::{Path, State},
    Json,
};
use platform::{
    auth::{Caller, Scope},
    error::{envelope, ApiResult},
    time_util::rfc3339_from_ms,
    ApiError,
};
use serde_json::{json, Value};

use crate::{
    live,
    store::{self, VideoRow},
    AppState,
};

pub fn video_json(state: &AppState, v: &VideoRow) -> Value {
    let base = state.platform.public_url();
    let live = v.state == "live";
    json!({
        "uid": v.uid,
        "created": rfc3339_from_ms(v.created_ms),
        "modified": rfc3339_from_ms(v.modified_ms),
        "liveInput": v.live_input_id,
        "status": { "state": if live { "live-inprogress" } else { "ready" } },
        "readyToStream": v.duration_ticks > 0,
        "duration": if live { -1.0 } else { v.duration_ticks as f64 / 90_000.0 },
        "size": v.size_bytes,
        "input": { "width": v.width, "height": v.height },
        "meta": {},
        "recording": v.recorded,
        "startedAt": rfc3339_from_ms(v.started_ms),
        "endedAt": v.ended_ms.map(rfc3339_from_ms),
        "playback": { "hls": format!("{base}/stream/{}/manifest/video.m3u8", v.uid) },
        "preview": format!("{base}/stream/{}/manifest/video.m3u8", v.uid),
    })
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamRead)?;
    let rows = store::list_videos(&state.platform.db, &account_id, None).await?;
    Ok(envelope(
        rows.iter()
            .map(|v| video_json(&state, v))
            .collect::<Vec<_>>(),
    ))
}

pub async fn list_of_input(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, input_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamRead)?;
    super::inputs::load(&state, &account_id, &input_id).await?;
    let rows = store::list_videos(&state.platform.db, &account_id, Some(&input_id)).await?;
    Ok(envelope(
        rows.iter()
            .map(|v| video_json(&state, v))
            .collect::<Vec<_>>(),
    ))
}

async fn load(state: &AppState, account_id: &str, video_id: &str) -> ApiResult<VideoRow> {
    store::get_video(&state.platform.db, video_id)
        .await?
        .filter(|v| v.account_id == account_id && v.recorded)
        .ok_or_else(|| ApiError::not_found("video"))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, video_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamRead)?;
    let v = load(&state, &account_id, &video_id).await?;
    Ok(envelope(video_json(&state, &v)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, video_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::StreamWrite)?;
    let v = load(&state, &account_id, &video_id).await?;
    if v.state == "live" {
        return Err(ApiError::conflict("the video is still being broadcast"));
    }
    live::delete_video(&state.platform, &account_id, &video_id).await?;
    Ok(envelope(Value::Null))
}
