//! Delivery: lifecycle, HLS playlists and segments, live preview windows and instant clips.
//! No token: ids are unguessable 128-bit values, as in Cloudflare's delivery URLs.

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use platform::{error::ApiResult, ApiError, Metric};
use serde::Deserialize;
use serde_json::json;

use crate::{
    hls::{self, Kind, MediaInput, Variant},
    keys,
    mux::{
        clip::{write_clip, ClipInput},
        read::read_segment,
        OpusConfig, Sample, AUDIO_TIMESCALE, VIDEO_TIMESCALE,
    },
    store::{self, SegmentRow, VideoRow},
    timespec::parse_seconds,
    AppState,
};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const MAX_CLIP_SECONDS: f64 = 60.0;
const MIN_PREVIEW_SECONDS: f64 = 30.0;
const MAX_PREVIEW_SECONDS: f64 = 300.0;

/// The video an id names: a video uid, or a live input uid (its current or latest broadcast).
async fn resolve(state: &AppState, id: &str) -> ApiResult<VideoRow> {
    if let Some(video) = store::get_video(&state.platform.db, id).await? {
        return Ok(video);
    }
    let video_id = match state.broadcasts.status(id) {
        Some(live) => Some(live.video_id),
        None => store::latest_video_of_input(&state.platform.db, id)
            .await?
            .map(|v| v.uid),
    };
    match video_id {
        Some(video_id) => store::get_video(&state.platform.db, &video_id)
            .await?
            .ok_or_else(|| ApiError::not_found("video")),
        None => Err(ApiError::not_found("video or live input")),
    }
}

/// Refuses a browser request from a site the video's live input does not allow (`allowedOrigins`).
pub(crate) async fn check_origin(
    state: &AppState,
    live_input_id: &str,
    headers: &HeaderMap,
) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let Some(input) = store::get_input_by_uid(&state.platform.db, live_input_id).await? else {
        return Ok(());
    };
    let allowed = input.allowed_origins.unwrap_or_default();
    if crate::origins::allows(&allowed, origin.to_str().unwrap_or("")) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            10403,
            "origin_not_allowed",
            "this video may not be played from this origin (recording.allowedOrigins)",
        ))
    }
}

/// [`resolve`], then [`check_origin`].
async fn playable(state: &AppState, id: &str, headers: &HeaderMap) -> ApiResult<VideoRow> {
    let video = resolve(state, id).await?;
    check_origin(state, &video.live_input_id, headers).await?;
    Ok(video)
}

pub async fn lifecycle(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(input) = store::get_input_by_uid(&state.platform.db, &id).await? {
        let live = state.broadcasts.status(&input.uid);
        let video = match &live {
            Some(l) => Some(l.video_id.clone()),
            None => store::latest_video_of_input(&state.platform.db, &input.uid)
                .await?
                .filter(|v| v.recorded)
                .map(|v| v.uid),
        };
        return Ok(Json(
            json!({ "isInput": true, "videoUID": video, "live": live.is_some_and(|l| l.connected) }),
        ));
    }
    let video = store::get_video(&state.platform.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("video or live input"))?;
    Ok(Json(
        json!({ "isInput": false, "videoUID": video.uid, "live": video.state == "live" }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    duration: Option<String>,
}

fn playlist_response(text: String, extra: &[(&'static str, String)]) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, PLAYLIST),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response();
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

/// The segments a (possibly preview) media playlist lists, and how many discontinuities precede them.
fn window<'a>(
    state: &AppState,
    video: &VideoRow,
    all: &'a [SegmentRow],
    preview: Option<f64>,
) -> (&'a [SegmentRow], u64) {
    let start = if let Some(seconds) = preview {
        let end = all.last().map_or(0, |s| s.end_ticks());
        let from = end - (seconds * 90_000.0) as i64;
        all.iter()
            .position(|s| s.end_ticks() > from)
            .unwrap_or(all.len())
    } else if video.state == "live" {
        all.len().saturating_sub(state.config.live_window.max(1))
    } else {
        0
    };
    let discontinuities = all[..start].iter().filter(|s| s.discontinuity).count() as u64;
    (&all[start..], discontinuities)
}

fn parse_preview(query: &PreviewQuery) -> ApiResult<Option<f64>> {
    let Some(text) = &query.duration else {
        return Ok(None);
    };
    let seconds = parse_seconds(text)
        .ok_or_else(|| ApiError::bad_request("duration: expected e.g. 30s, 3m or 5m"))?;
    if !(MIN_PREVIEW_SECONDS..=MAX_PREVIEW_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request("duration must be between 30s and 5m"));
    }
    Ok(Some(seconds))
}

pub async fn multivariant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PreviewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    let preview = parse_preview(&query)?;
    let video = playable(&state, &id, &headers).await?;
    let segments = store::list_segments(&state.platform.db, &video.uid).await?;
    let inits = store::list_inits(&state.platform.db, &video.uid).await?;
    let (listed, _) = window(&state, &video, &segments, preview);
    let Some(first) = listed.first() else {
        return Err(ApiError::not_found(
            "media of this broadcast (no segment is complete yet)",
        ));
    };
    let init = inits
        .iter()
        .find(|i| i.idx == first.init_idx)
        .or(inits.last())
        .ok_or_else(|| ApiError::not_found("init segment"))?;
    let seconds: f64 = segments.iter().map(|s| s.duration_seconds()).sum();
    let bytes: i64 = segments.iter().map(|s| s.size_bytes).sum();
    let bandwidth = if seconds > 0.0 {
        (bytes as f64 * 8.0 / seconds) as u64
    } else {
        1
    };
    // Relative to this playlist (so proxies and the public URL do not matter), and naming the
    // video even when this playlist was asked for by live input id.
    let uri = match (&query.duration, preview) {
        (Some(d), Some(_)) => format!(
            "../../{}/manifest/stream.m3u8?duration={}",
            video.uid,
            urlencode(d)
        ),
        _ => format!("../../{}/manifest/stream.m3u8", video.uid),
    };
    let text = hls::multivariant(&Variant {
        uri: &uri,
        codecs: &init.codecs,
        width: init.width as u64,
        height: init.height as u64,
        bandwidth,
    });
    let mut headers = vec![("stream-media-id", video.uid.clone())];
    if preview.is_some() {
        headers.push((
            "preview-start-seconds",
            format!("{:.3}", first.start_seconds()),
        ));
    }
    Ok(playlist_response(text, &headers))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn media(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PreviewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    let preview = parse_preview(&query)?;
    let video = playable(&state, &id, &headers).await?;
    let segments = store::list_segments(&state.platform.db, &video.uid).await?;
    let (listed, discontinuities_before) = window(&state, &video, &segments, preview);
    if listed.is_empty() {
        return Err(ApiError::not_found(
            "media of this broadcast (no segment is complete yet)",
        ));
    }
    let kind = if video.state == "live" || preview.is_some() {
        Kind::Live
    } else {
        Kind::Vod
    };
    let text = hls::media_playlist(&MediaInput {
        segments: listed,
        target_duration: hls::playlist_target_duration(video.target_duration, &segments),
        discontinuities_before,
        started_ms: video.started_ms,
        kind,
    });
    let mut headers = vec![("stream-media-id", video.uid.clone())];
    if preview.is_some() {
        headers.push((
            "preview-start-seconds",
            format!("{:.3}", listed[0].start_seconds()),
        ));
    }
    Ok(playlist_response(text, &headers))
}

pub async fn segment(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let video = store::get_video(&state.platform.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("video"))?;
    check_origin(&state, &video.live_input_id, &headers).await?;
    let (key, content_type, delivered) = if let Some(idx) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        let idx: i64 = idx.parse().map_err(|_| ApiError::not_found("segment"))?;
        (
            keys::init_key(&video.account_id, &video.uid, idx)?,
            "video/mp4",
            None,
        )
    } else if let Some(seq) = file.strip_suffix(".m4s") {
        let seq: i64 = seq.parse().map_err(|_| ApiError::not_found("segment"))?;
        let row = store::get_segment(&state.platform.db, &video.uid, seq)
            .await?
            .ok_or_else(|| ApiError::not_found("segment"))?;
        (
            keys::segment_key(&video.account_id, &video.uid, seq)?,
            "video/iso.segment",
            Some(row.duration_seconds()),
        )
    } else {
        return Err(ApiError::not_found("segment"));
    };
    let data = state
        .platform
        .storage
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))?;
    if let Some(seconds) = delivered {
        state.platform.meter.record(
            &video.account_id,
            Metric::StreamMinutesDelivered,
            seconds / 60.0,
        );
    }
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400, immutable"),
        ],
        data,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ClipQuery {
    time: Option<String>,
    duration: Option<String>,
    filename: Option<String>,
}

/// A validated clip range on the recording, in seconds, and the segments covering it.
struct ClipRange {
    video: VideoRow,
    start: f64,
    duration: f64,
    segments: Vec<SegmentRow>,
    /// EXT-X-TARGETDURATION of the video's playlists.
    target_duration: u64,
}

async fn clip_range(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    query: &ClipQuery,
) -> ApiResult<ClipRange> {
    let time = query
        .time
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("time is required (e.g. time=600s)"))?;
    let start = parse_seconds(time)
        .ok_or_else(|| ApiError::bad_request("time: expected seconds such as 600s or 10m"))?;
    let duration = query
        .duration
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("duration is required (e.g. duration=30s)"))?;
    let duration = parse_seconds(duration)
        .ok_or_else(|| ApiError::bad_request("duration: expected seconds such as 30s"))?;
    if duration <= 0.0 || duration > MAX_CLIP_SECONDS {
        return Err(ApiError::bad_request(
            "duration must be more than 0s and at most 60s",
        ));
    }
    let video = playable(state, id, headers).await?;
    if !video.recorded {
        return Err(ApiError::bad_request(
            "clipping needs a live input with recording.mode \"automatic\"",
        ));
    }
    let all = store::list_segments(&state.platform.db, &video.uid).await?;
    let available = all.last().map_or(0.0, |s| s.end_ticks() as f64 / 90_000.0);
    if start + duration > available + 1e-6 {
        return Err(ApiError::bad_request(format!(
            "the range {start:.3}s–{:.3}s is outside the recording (0s–{available:.3}s so far)",
            start + duration
        )));
    }
    let target_duration = hls::playlist_target_duration(video.target_duration, &all);
    let from = (start * 90_000.0) as i64;
    let to = ((start + duration) * 90_000.0).ceil() as i64;
    let Some(mut first) = all.iter().position(|s| s.end_ticks() > from) else {
        return Err(ApiError::bad_request("no recorded media in that range"));
    };
    // A segment cut inside a GOP decodes only after the segments back to its keyframe (they
    // share its init: a configuration change always starts at a keyframe).
    while first > 0 && !all[first].independent && all[first - 1].init_idx == all[first].init_idx {
        first -= 1;
    }
    let segments: Vec<SegmentRow> = all[first..]
        .iter()
        .take_while(|s| s.start_ticks < to)
        .cloned()
        .collect();
    if segments.is_empty() {
        return Err(ApiError::bad_request("no recorded media in that range"));
    }
    Ok(ClipRange {
        video,
        start,
        duration,
        segments,
        target_duration,
    })
}

pub async fn clip_playlist(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    let range = clip_range(&state, &id, &headers, &query).await?;
    let offset = range.start - range.segments[0].start_seconds();
    let text = hls::media_playlist(&MediaInput {
        segments: &range.segments,
        target_duration: range.target_duration,
        discontinuities_before: 0,
        started_ms: range.video.started_ms,
        kind: Kind::Clip {
            offset: (offset * 1000.0).round() / 1000.0,
        },
    });
    Ok(playlist_response(
        text,
        &[("stream-media-id", range.video.uid.clone())],
    ))
}

/// Only `[A-Za-z0-9._-]`, ending in `.mp4`; anything else falls back to `clip.mp4`.
fn clip_filename(requested: Option<&str>) -> String {
    match requested {
        Some(name)
            if !name.is_empty()
                && name.len() <= 128
                && name.ends_with(".mp4")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            name.to_string()
        }
        _ => "clip.mp4".to_string(),
    }
}

pub async fn clip_mp4(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ClipQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    if query
        .filename
        .as_deref()
        .is_some_and(|f| clip_filename(Some(f)) != f)
    {
        return Err(ApiError::bad_request(
            "filename may use letters, digits, '.', '_' and '-' and must end in .mp4",
        ));
    }
    let range = clip_range(&state, &id, &headers, &query).await?;
    let data = build_clip(&state, &range).await?;
    state.platform.meter.record(
        &range.video.account_id,
        Metric::StreamMinutesDelivered,
        range.duration / 60.0,
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        clip_filename(query.filename.as_deref())
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&range.video.uid) {
        headers.insert("stream-media-id", value);
    }
    Ok((headers, Bytes::from(data)).into_response())
}

/// Reads the covering segments (one decoder configuration: a clip stops at a configuration
/// change) and copies the samples from the keyframe at or before the start.
async fn build_clip(state: &AppState, range: &ClipRange) -> ApiResult<Vec<u8>> {
    let video = &range.video;
    let first_init = range.segments[0].init_idx;
    let init_key = keys::init_key(&video.account_id, &video.uid, first_init)?;
    let init = state
        .platform
        .storage
        .get(&init_key)
        .await?
        .ok_or_else(|| ApiError::internal("init segment missing"))?;
    let (avc, has_audio) = read_init(&init).map_err(ApiError::internal)?;
    let mut video_samples: Vec<Sample> = Vec::new();
    let mut audio_samples: Vec<Sample> = Vec::new();
    for row in range
        .segments
        .iter()
        .take_while(|s| s.init_idx == first_init)
    {
        let key = keys::segment_key(&video.account_id, &video.uid, row.seq)?;
        let data = state
            .platform
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::internal("segment missing"))?;
        let samples = read_segment(&data).map_err(ApiError::internal)?;
        video_samples.extend(samples.video);
        audio_samples.extend(samples.audio);
    }
    let start_v = (range.start * f64::from(VIDEO_TIMESCALE)).round() as u64;
    let end_v = ((range.start + range.duration) * f64::from(VIDEO_TIMESCALE)).round() as u64;
    let first = video_samples
        .iter()
        .rposition(|s| s.sync && s.decode_time <= start_v)
        .unwrap_or(0);
    let last = video_samples
        .iter()
        .position(|s| s.decode_time >= end_v)
        .unwrap_or(video_samples.len());
    let video_slice = &video_samples[first..last.max(first)];
    let start_a = (range.start * f64::from(AUDIO_TIMESCALE)).round() as u64;
    let end_a = ((range.start + range.duration) * f64::from(AUDIO_TIMESCALE)).round() as u64;
    let first_a = audio_samples
        .iter()
        .rposition(|s| s.decode_time <= start_a)
        .unwrap_or(0);
    let last_a = audio_samples
        .iter()
        .position(|s| s.decode_time >= end_a)
        .unwrap_or(audio_samples.len());
    let audio_slice = &audio_samples[first_a..last_a.max(first_a)];
    // A configuration change inside the range shortens the clip to what shares the first init.
    let available_end = video_slice
        .last()
        .map_or(0, |s| s.decode_time + u64::from(s.duration));
    let duration = range
        .duration
        .min((available_end as f64 / f64::from(VIDEO_TIMESCALE)) - range.start)
        .max(0.0);
    write_clip(&ClipInput {
        video_config: &avc,
        video: video_slice,
        audio_config: has_audio.then_some(OpusConfig { channels: 2 }),
        audio: audio_slice,
        start_seconds: range.start,
        duration_seconds: duration,
    })
    .map_err(|e| ApiError::bad_request(format!("cannot clip this range: {e}")))
}

/// The avcC configuration and whether an Opus track exists, from an init segment we wrote.
fn read_init(init: &Bytes) -> Result<(crate::ingest::h264::AvcConfig, bool), String> {
    use mp4_atom::{Codec, Decode, Ftyp, Moov};
    let mut cursor = &init[..];
    Ftyp::decode(&mut cursor).map_err(|e| e.to_string())?;
    let moov = Moov::decode(&mut cursor).map_err(|e| e.to_string())?;
    let mut avc = None;
    let mut audio = false;
    for trak in &moov.trak {
        for codec in &trak.mdia.minf.stbl.stsd.codecs {
            match codec {
                Codec::Avc1(a) => {
                    let sps = a
                        .avcc
                        .sequence_parameter_sets
                        .first()
                        .cloned()
                        .unwrap_or_default();
                    let pps = a
                        .avcc
                        .picture_parameter_sets
                        .first()
                        .cloned()
                        .unwrap_or_default();
                    avc = Some(crate::ingest::h264::AvcConfig {
                        sps,
                        pps,
                        width: a.visual.width,
                        height: a.visual.height,
                    });
                }
                Codec::Opus(_) => audio = true,
                _ => {}
            }
        }
    }
    avc.map(|a| (a, audio))
        .ok_or_else(|| "init without avc1".to_string())
}
