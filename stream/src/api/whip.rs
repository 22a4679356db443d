//! WHIP ingest (RFC 9725) and WHEP playback on top of the Calls media core (`calls::media`).
//!
//! `POST /stream/{secret}/webRTC/publish` (or `/stream/{input_uid}/webRTC/publish` with
//! `Authorization: Bearer <secret>`) publishes the offer on the shared media engine, answers 201
//! with `Location` and `ETag`, and taps every track into the broadcast's recorder. `DELETE` on the
//! Location ends it; `PATCH` takes trickled candidates (we are ICE-lite: our candidate is in the
//! answer and the client's address is learned from its checks, so they need no action) and
//! refuses ICE restarts with 405; `OPTIONS` advertises `Accept-Post: application/sdp`.
//! `POST /stream/{input_uid}/webRTC/play` is WHEP: any number of viewers subscribe to the live tracks.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use calls::media::{MediaCore, MediaError, MediaKind, PeerId, PeerState, TapEvent, TrackId};
use platform::{error::ApiResult, ApiError, Metric};

use crate::{
    ingest::RtpPacket,
    live::{BroadcastOptions, KeyframeRequester, Publisher},
    store::{self, LiveInputRow},
    AppState, TrackKind,
};

const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";
const MAX_SDP_BYTES: usize = 64 * 1024;

/// Live WHIP/WHEP sessions of this process.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<SessionsInner>>,
}

#[derive(Default)]
struct SessionsInner {
    /// WHIP session id → session.
    publishers: HashMap<String, PublishSession>,
    /// Live input uid → its published tracks (for WHEP).
    live_tracks: HashMap<String, LiveTracks>,
    /// WHEP session id → viewer.
    viewers: HashMap<String, ViewSession>,
}

#[derive(Clone)]
struct PublishSession {
    input_uid: String,
    peer: PeerId,
    ice_ufrag: Option<String>,
}

#[derive(Clone)]
struct LiveTracks {
    account_id: String,
    session_id: String,
    tracks: Vec<TrackId>,
}

#[derive(Clone)]
struct ViewSession {
    input_uid: String,
    peer: PeerId,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts or resumes the broadcast of a live input for a publisher (checks it exists and is enabled).
pub async fn begin_broadcast(
    state: &AppState,
    input_uid: &str,
    audio: bool,
    keyframe: KeyframeRequester,
) -> ApiResult<Publisher> {
    let input = store::get_input_by_uid(&state.platform.db, input_uid)
        .await?
        .ok_or_else(|| ApiError::not_found("live input"))?;
    begin_for(state, &input, audio, keyframe).await
}

async fn begin_for(
    state: &AppState,
    input: &LiveInputRow,
    audio: bool,
    keyframe: KeyframeRequester,
) -> ApiResult<Publisher> {
    if !input.enabled {
        return Err(ApiError::forbidden("this live input is disabled"));
    }
    state
        .broadcasts
        .begin(
            &state.platform,
            input,
            audio,
            keyframe,
            BroadcastOptions {
                segment_ms: state.config.segment_ms,
            },
        )
        .await
}

fn media_error(e: MediaError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match e {
        MediaError::NoSupportedCodec => ApiError::unsupported_media_type(
            "the offer has no codec we support (H264 packetization-mode 1, VP8, Opus)",
        ),
        other => ApiError::from_status(status, other.to_string()),
    }
}

fn require_sdp_body(headers: &HeaderMap, body: &Bytes, content_type: &str) -> ApiResult<String> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !given
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(content_type)
    {
        return Err(ApiError::unsupported_media_type(format!(
            "Content-Type must be {content_type}"
        )));
    }
    if body.len() > MAX_SDP_BYTES {
        return Err(ApiError::payload_too_large(format!(
            "the SDP may be at most {MAX_SDP_BYTES} bytes"
        )));
    }
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the SDP is not UTF-8"))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The live input a WHIP URL names: by secret in the path, or by uid with the secret as Bearer.
async fn publishing_input(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> ApiResult<LiveInputRow> {
    if let Some(input) = store::get_input_by_secret(&state.platform.db, id).await? {
        return Ok(input);
    }
    let Some(input) = store::get_input_by_uid(&state.platform.db, id).await? else {
        return Err(ApiError::not_found("live input (unknown WHIP URL)"));
    };
    match bearer(headers) {
        Some(token) if constant_time_eq(token, &input.secret) => Ok(input),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            10002,
            "invalid_token",
            "the WHIP secret is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            10001,
            "missing_token",
            "publish to the URL with the secret, or send it as Authorization: Bearer",
        )),
    }
}

fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_string())
}

fn sdp_response(status: StatusCode, location: &str, etag: &str, answer: String) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, SDP)], answer).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    response
}

pub async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            ("accept-post", SDP),
            (header::ALLOW.as_str(), "OPTIONS, POST"),
        ],
    )
        .into_response()
}

pub async fn publish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let sdp = require_sdp_body(&headers, &body, SDP)?;
    let input = publishing_input(&state, &id, &headers).await?;
    if !input.enabled {
        return Err(ApiError::forbidden("this live input is disabled"));
    }
    if state
        .broadcasts
        .status(&input.uid)
        .is_some_and(|s| s.connected)
    {
        return Err(ApiError::conflict(
            "this live input already has a publisher",
        ));
    }
    let media = state.media.clone();
    let recorded = input.recording_mode == "automatic";
    let offer = recorded
        .then(|| super::offer::h264_only_video(&sdp))
        .flatten();
    let published = media
        .publish(&input.account_id, offer.as_deref().unwrap_or(&sdp))
        .await
        .map_err(media_error)?;
    let video = published.tracks.iter().find(|t| t.kind == MediaKind::Video);
    let audio = published
        .tracks
        .iter()
        .find(|t| t.kind == MediaKind::Audio && t.codec.name.eq_ignore_ascii_case("opus"));
    if video.is_none() && audio.is_none() {
        media.close(&published.peer).await;
        return Err(ApiError::unsupported_media_type(
            "the offer sends no audio or video we can take (H264 packetization-mode 1, VP8, Opus)",
        ));
    }
    let recordable_video = video.filter(|t| t.codec.name.eq_ignore_ascii_case("H264"));
    // The recorder muxes H264 only: a recorded input refuses other video up front rather than
    // producing an empty recording. With recording off, VP8 still reaches WHEP viewers.
    if let Some(other) = video.filter(|_| recordable_video.is_none()) {
        if recorded {
            let codec = other.codec.name.clone();
            media.close(&published.peer).await;
            return Err(ApiError::unsupported_media_type(format!(
                "recording needs H264 video (packetization-mode 1) but the offer's video is {codec}; \
                 offer H264, or set recording.mode \"off\" to serve WHEP viewers only"
            )));
        }
    }
    let keyframe: KeyframeRequester = match recordable_video {
        Some(track) => {
            let (media, id) = (media.clone(), track.id.clone());
            Arc::new(move || media.request_keyframe(&id))
        }
        None => Arc::new(|| {}),
    };
    let publisher = match begin_for(&state, &input, audio.is_some(), keyframe).await {
        Ok(p) => Arc::new(p),
        Err(e) => {
            media.close(&published.peer).await;
            return Err(e);
        }
    };
    let session_id = platform::ids::new_uid();
    // Tap the tracks: the recorder sees H264 video and Opus audio; other codecs go to WHEP only.
    let mut taps = Vec::new();
    for (track, kind) in [
        (recordable_video, TrackKind::Video),
        (audio, TrackKind::Audio),
    ] {
        let Some(track) = track else { continue };
        match media.tap(&track.id) {
            Ok(rx) => taps.push((rx, kind)),
            Err(e) => {
                tracing::warn!(track = %track.id.0, error = %e, "tapping a published track failed")
            }
        }
    }
    for (rx, kind) in taps {
        tokio::spawn(forward_tap(rx, kind, publisher.clone()));
    }
    drop(publisher); // the tap tasks hold it; when the last ends, the broadcast sees the publisher leave
    {
        let mut sessions = lock(&state.sessions.inner);
        sessions.publishers.insert(
            session_id.clone(),
            PublishSession {
                input_uid: input.uid.clone(),
                peer: published.peer.clone(),
                ice_ufrag: ice_ufrag(&sdp),
            },
        );
        sessions.live_tracks.insert(
            input.uid.clone(),
            LiveTracks {
                account_id: input.account_id.clone(),
                session_id: session_id.clone(),
                tracks: published.tracks.iter().map(|t| t.id.clone()).collect(),
            },
        );
    }
    tokio::spawn(watch_publisher(
        state.clone(),
        media.clone(),
        published.peer.clone(),
        session_id.clone(),
    ));
    tracing::info!(input = %input.uid, session = %session_id, tracks = published.tracks.len(), "WHIP publisher connected");
    let location = format!("/stream/{id}/webRTC/publish/{session_id}");
    Ok(sdp_response(
        StatusCode::CREATED,
        &location,
        &format!("\"{session_id}\""),
        published.answer_sdp,
    ))
}

async fn forward_tap(
    mut rx: tokio::sync::mpsc::Receiver<TapEvent>,
    kind: TrackKind,
    publisher: Arc<Publisher>,
) {
    while let Some(event) = rx.recv().await {
        match event {
            TapEvent::Rtp(p) => publisher.rtp(
                kind,
                RtpPacket {
                    seq: p.seq,
                    timestamp: p.timestamp,
                    marker: p.marker,
                    payload: p.payload,
                },
            ),
            TapEvent::SenderReport { ntp_time, rtp_time } => {
                publisher.sender_report(kind, ntp_time, rtp_time)
            }
            TapEvent::Ended => break,
        }
    }
}

/// Closes the peer when its connection fails, so a vanished publisher ends like a DELETE.
async fn watch_publisher(state: AppState, media: MediaCore, peer: PeerId, session_id: String) {
    if let Some(mut watch) = media.peer_state(&peer) {
        loop {
            let current = *watch.borrow_and_update();
            if matches!(current, PeerState::Disconnected | PeerState::Closed) {
                break;
            }
            if watch.changed().await.is_err() {
                break;
            }
        }
    }
    end_publish_session(&state, &media, &session_id).await;
}

async fn end_publish_session(state: &AppState, media: &MediaCore, session_id: &str) -> bool {
    let session = {
        let mut sessions = lock(&state.sessions.inner);
        let session = sessions.publishers.remove(session_id);
        if let Some(s) = &session {
            if sessions
                .live_tracks
                .get(&s.input_uid)
                .is_some_and(|t| t.session_id == session_id)
            {
                sessions.live_tracks.remove(&s.input_uid);
            }
        }
        session
    };
    match session {
        Some(session) => {
            media.close(&session.peer).await;
            tracing::info!(input = %session.input_uid, session = %session_id, "WHIP session ended");
            true
        }
        None => false,
    }
}

pub async fn end_publish(
    State(state): State<AppState>,
    Path((_id, session_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if end_publish_session(&state, &state.media.clone(), &session_id).await {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("WHIP session"))
    }
}

/// RFC 9725 §4.3: trickle candidates are accepted (204); an ICE restart (new ufrag) is not
/// supported (405); a stale `If-Match` is 412.
pub async fn patch_publish(
    State(state): State<AppState>,
    Path((_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let fragment = require_sdp_body(&headers, &body, TRICKLE)?;
    let session = lock(&state.sessions.inner)
        .publishers
        .get(&session_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("WHIP session"))?;
    if let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        if tag != "*" && tag.trim_matches('"') != session_id {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                10412,
                "precondition_failed",
                "If-Match does not match the session's ETag",
            ));
        }
    }
    if let Some(ufrag) = ice_ufrag(&fragment) {
        if session
            .ice_ufrag
            .as_deref()
            .is_some_and(|current| current != ufrag)
        {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                10405,
                "ice_restart_unsupported",
                "ICE restarts are not supported; publish again",
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn play(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let sdp = require_sdp_body(&headers, &body, SDP)?;
    let input = store::get_input_by_uid(&state.platform.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("live input"))?;
    super::playback::check_origin(&state, &input.uid, &headers).await?;
    let live = lock(&state.sessions.inner)
        .live_tracks
        .get(&input.uid)
        .cloned();
    let Some(live) = live else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            10409,
            "not_live",
            "the live input is not being broadcast right now",
        ));
    };
    let media = state.media.clone();
    let subscribed = media
        .subscribe(&live.account_id, &sdp, &live.tracks)
        .await
        .map_err(media_error)?;
    let session_id = platform::ids::new_uid();
    lock(&state.sessions.inner).viewers.insert(
        session_id.clone(),
        ViewSession {
            input_uid: input.uid.clone(),
            peer: subscribed.peer.clone(),
        },
    );
    tokio::spawn(meter_viewer(
        state.clone(),
        media,
        subscribed.peer.clone(),
        session_id.clone(),
        live.account_id.clone(),
    ));
    let location = format!("/stream/{id}/webRTC/play/{session_id}");
    Ok(sdp_response(
        StatusCode::CREATED,
        &location,
        &format!("\"{session_id}\""),
        subscribed.answer_sdp,
    ))
}

/// Counts a WHEP viewer's connected time as minutes delivered, and forgets the session after.
async fn meter_viewer(
    state: AppState,
    media: MediaCore,
    peer: PeerId,
    session_id: String,
    account_id: String,
) {
    let mut connected_at: Option<Instant> = None;
    let mut delivered = 0.0f64;
    if let Some(mut watch) = media.peer_state(&peer) {
        loop {
            let current = *watch.borrow_and_update();
            match current {
                PeerState::Connected => connected_at = connected_at.or(Some(Instant::now())),
                PeerState::Disconnected | PeerState::Closed => break,
                PeerState::Connecting => {}
            }
            if watch.changed().await.is_err() {
                break;
            }
        }
    }
    if let Some(at) = connected_at {
        delivered = at.elapsed().as_secs_f64();
        state.platform.meter.record(
            &account_id,
            Metric::StreamMinutesDelivered,
            delivered / 60.0,
        );
    }
    let removed = lock(&state.sessions.inner).viewers.remove(&session_id);
    if let Some(view) = removed {
        media.close(&view.peer).await;
        tracing::info!(input = %view.input_uid, session = %session_id, seconds = delivered, "WHEP viewer left");
    }
}

pub async fn end_play(
    State(state): State<AppState>,
    Path((_id, session_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let view = lock(&state.sessions.inner)
        .viewers
        .get(&session_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("WHEP session"))?;
    // Closing makes the peer state Closed; the metering task records the minutes and forgets it.
    state.media.close(&view.peer).await;
    Ok(StatusCode::OK)
}
