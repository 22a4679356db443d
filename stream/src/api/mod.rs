//! HTTP routes of Stream.
//!
//! Management (Bearer token, `stream:read`/`stream:write`) under
//! `/client/v4/accounts/{account_id}/stream/…`; delivery and ingest (no token: the ids and the
//! WHIP secret are unguessable) under `/stream/{id}/…`:
//! - `/stream/{secret}/webRTC/publish` (WHIP), `/stream/{input_uid}/webRTC/play` (WHEP)
//! - `/stream/{id}/manifest/video.m3u8` (multivariant; `?duration=` preview), `…/manifest/stream.m3u8`
//! - `/stream/{video_id}/manifest/clip.m3u8?time=&duration=`, `/stream/{video_id}/clip.mp4?time=&duration=&filename=`
//! - `/stream/{id}/segments/{init-N.mp4|N.m4s}`, `/stream/{id}/lifecycle`

pub mod inputs;
mod offer;
pub mod playback;
pub mod videos;
pub mod whip;

use axum::{
    routing::{delete, get, post},
    Router,
};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    let accounts = "/client/v4/accounts/{account_id}/stream";
    Router::new()
        .route(
            &format!("{accounts}/live_inputs"),
            get(inputs::list).post(inputs::create),
        )
        .route(
            &format!("{accounts}/live_inputs/{{input_id}}"),
            get(inputs::get).put(inputs::update).delete(inputs::delete),
        )
        .route(
            &format!("{accounts}/live_inputs/{{input_id}}/videos"),
            get(videos::list_of_input),
        )
        .route(
            &format!("{accounts}/live_inputs/{{input_id}}/rotate_secret"),
            post(inputs::rotate_secret),
        )
        .route(accounts, get(videos::list))
        .route(
            &format!("{accounts}/{{video_id}}"),
            get(videos::get).delete(videos::delete),
        )
        .route("/stream/{id}/lifecycle", get(playback::lifecycle))
        .route(
            "/stream/{id}/manifest/video.m3u8",
            get(playback::multivariant),
        )
        .route("/stream/{id}/manifest/stream.m3u8", get(playback::media))
        .route(
            "/stream/{id}/manifest/clip.m3u8",
            get(playback::clip_playlist),
        )
        .route("/stream/{id}/clip.mp4", get(playback::clip_mp4))
        .route("/stream/{id}/segments/{file}", get(playback::segment))
        .route(
            "/stream/{id}/webRTC/publish",
            post(whip::publish).options(whip::options),
        )
        .route(
            "/stream/{id}/webRTC/publish/{session}",
            delete(whip::end_publish).patch(whip::patch_publish),
        )
        .route(
            "/stream/{id}/webRTC/play",
            post(whip::play).options(whip::options),
        )
        .route("/stream/{id}/webRTC/play/{session}", delete(whip::end_play))
        .with_state(state)
}
