//! The Cloudflare-Realtime-compatible sessions API under `/v1/apps/{app_id}/sessions`.
//! Authentication: `Authorization: Bearer <app secret>`.

use std::time::Instant;

use axum::{
    extract::{Path, State},
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::IntoResponse,
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    apps::{digests_equal, find_app, hash_secret, App},
    errors::SessionApiError,
    ApiState,
};
use crate::sfu::types::{
    ChannelRequest, Command, NegotiationOutcome, Owner, PullRequest, PushRequest, SdpKind,
};

type Result<T> = std::result::Result<T, SessionApiError>;
type JsonBody<T> = std::result::Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

async fn authenticate(state: &ApiState, headers: &HeaderMap, app_id: &str) -> Result<App> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(SessionApiError::unauthorized)?;
    let app = find_app(&state.platform.db, app_id)
        .await?
        .ok_or_else(SessionApiError::unauthorized)?;
    if !digests_equal(&hash_secret(token), &app.secret_sha256) {
        return Err(SessionApiError::unauthorized());
    }
    Ok(app)
}

/// Authenticates, checks the session belongs to the app and applies the per-session rate limit.
async fn session_guard(
    state: &ApiState,
    headers: &HeaderMap,
    app_id: &str,
    session_id: &str,
) -> Result<App> {
    let app = authenticate(state, headers, app_id).await?;
    let entry = state
        .engine
        .peer(session_id)
        .filter(|e| e.owner == Owner::App(app.uid.clone()));
    if entry.is_none() {
        return Err(SessionApiError::new(
            StatusCode::NOT_FOUND,
            31404,
            "session_not_found",
            "session not found",
        ));
    }
    if !state
        .rate
        .allow(session_id, state.limits.calls_per_second, Instant::now())
    {
        return Err(SessionApiError::rate_limited());
    }
    Ok(app)
}

fn check_sdp(state: &ApiState, desc: &SessionDescription, want: &str) -> Result<()> {
    if desc.sdp.len() > state.limits.max_sdp_bytes {
        return Err(SessionApiError::sdp_too_large(state.limits.max_sdp_bytes));
    }
    if desc.kind != want {
        return Err(SessionApiError::bad_request(format!(
            "sessionDescription.type must be {want:?} here"
        )));
    }
    Ok(())
}

fn sdp_json(kind: SdpKind, sdp: String) -> serde_json::Value {
    json!({ "type": kind, "sdp": sdp })
}

fn outcome_json(outcome: NegotiationOutcome) -> serde_json::Value {
    let requires = matches!(outcome.sdp, Some((SdpKind::Offer, _)));
    let mut body = json!({ "requiresImmediateRenegotiation": requires, "tracks": outcome.tracks });
    if let Some((kind, sdp)) = outcome.sdp {
        body["sessionDescription"] = sdp_json(kind, sdp);
    }
    body
}

#[derive(Deserialize, Default)]
pub struct NewSessionBody {
    #[serde(rename = "sessionDescription")]
    session_description: Option<SessionDescription>,
}

pub async fn new_session(
    State(state): State<ApiState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse> {
    let app = authenticate(&state, &headers, &app_id).await?;
    // The body is optional: an empty one creates a session without an offer.
    let body: NewSessionBody = if body.iter().all(u8::is_ascii_whitespace) {
        NewSessionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| SessionApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let offer = match body.session_description {
        Some(desc) => {
            check_sdp(&state, &desc, "offer")?;
            Some(desc.sdp)
        }
        None => None,
    };
    let (session_id, answer) = state
        .engine
        .create_peer(
            &app.uid,
            &app.account_id,
            Owner::App(app.uid.clone()),
            offer,
        )
        .await?;
    tracing::info!(app = %app.uid, session = %session_id, "session created");
    let mut result = json!({ "sessionId": session_id });
    if let Some(answer) = answer {
        result["sessionDescription"] = sdp_json(SdpKind::Answer, answer);
    }
    Ok((StatusCode::CREATED, Json(result)))
}

#[derive(Deserialize)]
pub struct TrackObject {
    location: Option<String>,
    #[serde(rename = "trackName")]
    track_name: Option<String>,
    mid: Option<String>,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

#[derive(Deserialize)]
pub struct NewTracksBody {
    #[serde(rename = "sessionDescription")]
    session_description: Option<SessionDescription>,
    #[serde(default)]
    tracks: Vec<TrackObject>,
}

pub async fn new_tracks(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBody<NewTracksBody>,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let Json(body) = body?;
    if body.tracks.is_empty() {
        return Err(SessionApiError::bad_request(
            "tracks must name at least one track",
        ));
    }
    let mut push = Vec::new();
    let mut pull = Vec::new();
    for t in body.tracks {
        let name = t
            .track_name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SessionApiError::bad_request("every track needs a trackName"))?;
        match t.location.as_deref() {
            Some("local") => push.push(PushRequest { name, mid: t.mid }),
            Some("remote") => {
                let session = t.session_id.ok_or_else(|| {
                    SessionApiError::bad_request(
                        "a remote track needs the sessionId that publishes it",
                    )
                })?;
                pull.push(PullRequest { session, name });
            }
            _ => {
                return Err(SessionApiError::bad_request(
                    "track location must be \"local\" or \"remote\"",
                ))
            }
        }
    }
    if !push.is_empty() && !pull.is_empty() {
        return Err(SessionApiError::bad_request(
            "push local tracks and pull remote tracks in separate requests",
        ));
    }
    let outcome = if !push.is_empty() {
        let desc = body.session_description.ok_or_else(|| {
            SessionApiError::bad_request("pushing local tracks needs an offer (sessionDescription)")
        })?;
        check_sdp(&state, &desc, "offer")?;
        state
            .engine
            .call_peer(&session_id, |reply| Command::PushTracks {
                peer: session_id.clone(),
                offer: desc.sdp,
                tracks: push,
                reply,
            })
            .await?
    } else {
        if body.session_description.is_some() {
            return Err(SessionApiError::bad_request("pulling remote tracks takes no offer: the SFU sends one, answer it with renegotiate"));
        }
        state
            .engine
            .call_peer(&session_id, |reply| Command::PullTracks {
                peer: session_id.clone(),
                tracks: pull,
                reply,
            })
            .await?
    };
    Ok(Json(outcome_json(outcome)))
}

#[derive(Deserialize)]
pub struct RenegotiateBody {
    #[serde(rename = "sessionDescription")]
    session_description: SessionDescription,
}

pub async fn renegotiate(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBody<RenegotiateBody>,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let Json(body) = body?;
    let desc = body.session_description;
    if desc.sdp.len() > state.limits.max_sdp_bytes {
        return Err(SessionApiError::sdp_too_large(state.limits.max_sdp_bytes));
    }
    match desc.kind.as_str() {
        "answer" => {
            state
                .engine
                .call_peer(&session_id, |reply| Command::Renegotiate {
                    peer: session_id.clone(),
                    answer: desc.sdp,
                    reply,
                })
                .await?;
            Ok(Json(json!({})))
        }
        // A client-initiated renegotiation (e.g. a transceiver changed direction).
        "offer" => {
            let outcome = state
                .engine
                .call_peer(&session_id, |reply| Command::PushTracks {
                    peer: session_id.clone(),
                    offer: desc.sdp,
                    tracks: Vec::new(),
                    reply,
                })
                .await?;
            Ok(Json(outcome_json(outcome)))
        }
        _ => Err(SessionApiError::bad_request(
            "sessionDescription.type must be \"answer\" or \"offer\"",
        )),
    }
}

#[derive(Deserialize)]
pub struct MidObject {
    mid: Option<String>,
}

#[derive(Deserialize)]
pub struct CloseBody {
    #[serde(default)]
    tracks: Vec<MidObject>,
    #[serde(rename = "sessionDescription")]
    session_description: Option<SessionDescription>,
    #[serde(default)]
    force: bool,
}

pub async fn close_tracks(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBody<CloseBody>,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let Json(body) = body?;
    let mids = body
        .tracks
        .into_iter()
        .map(|t| {
            t.mid
                .ok_or_else(|| SessionApiError::bad_request("every track to close needs its mid"))
        })
        .collect::<Result<Vec<_>>>()?;
    if mids.is_empty() {
        return Err(SessionApiError::bad_request(
            "tracks must name at least one mid",
        ));
    }
    let offer = match body.session_description {
        Some(desc) if !body.force => {
            check_sdp(&state, &desc, "offer")?;
            Some(desc.sdp)
        }
        _ => None,
    };
    let force = body.force;
    let outcome = state
        .engine
        .call_peer(&session_id, |reply| Command::CloseTracks {
            peer: session_id.clone(),
            mids,
            offer,
            force,
            reply,
        })
        .await?;
    Ok(Json(outcome_json(outcome)))
}

#[derive(Deserialize)]
pub struct UpdateBody {
    #[serde(default)]
    tracks: Vec<TrackObject>,
}

pub async fn update_tracks(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBody<UpdateBody>,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let Json(body) = body?;
    let mut updates = Vec::new();
    for t in body.tracks {
        if t.location.as_deref().is_some_and(|l| l != "remote") {
            return Err(SessionApiError::bad_request(
                "only remote tracks can be updated",
            ));
        }
        let (Some(mid), Some(session), Some(name)) = (t.mid, t.session_id, t.track_name) else {
            return Err(SessionApiError::bad_request(
                "every update needs mid, sessionId and trackName",
            ));
        };
        updates.push((mid, PullRequest { session, name }));
    }
    if updates.is_empty() {
        return Err(SessionApiError::bad_request(
            "tracks must name at least one update",
        ));
    }
    let tracks = state
        .engine
        .call_peer(&session_id, |reply| Command::UpdateTracks {
            peer: session_id.clone(),
            updates,
            reply,
        })
        .await?;
    Ok(Json(
        json!({ "requiresImmediateRenegotiation": false, "tracks": tracks }),
    ))
}

pub async fn get_session(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let status = state
        .engine
        .call_peer(&session_id, |reply| Command::Status {
            peer: session_id.clone(),
            reply,
        })
        .await?;
    Ok(Json(status))
}

pub async fn session_stats(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let stats = state
        .engine
        .call_peer(&session_id, |reply| Command::Stats {
            peer: session_id.clone(),
            reply,
        })
        .await?;
    Ok(Json(stats))
}

#[derive(Deserialize)]
pub struct ChannelObject {
    location: Option<String>,
    #[serde(rename = "dataChannelName")]
    name: Option<String>,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

#[derive(Deserialize)]
pub struct ChannelsBody {
    #[serde(rename = "dataChannels", default)]
    data_channels: Vec<ChannelObject>,
}

pub async fn new_datachannels(
    State(state): State<ApiState>,
    Path((app_id, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBody<ChannelsBody>,
) -> Result<impl IntoResponse> {
    session_guard(&state, &headers, &app_id, &session_id).await?;
    let Json(body) = body?;
    let mut channels = Vec::new();
    for c in body.data_channels {
        let name = c
            .name
            .filter(|n| !n.is_empty() && n.len() <= 256)
            .ok_or_else(|| {
                SessionApiError::bad_request(
                    "every data channel needs a dataChannelName (1-256 bytes)",
                )
            })?;
        let remote_session = match c.location.as_deref() {
            Some("local") => None,
            Some("remote") => Some(c.session_id.ok_or_else(|| {
                SessionApiError::bad_request("a remote data channel needs the publishing sessionId")
            })?),
            _ => {
                return Err(SessionApiError::bad_request(
                    "data channel location must be \"local\" or \"remote\"",
                ))
            }
        };
        channels.push(ChannelRequest {
            name,
            remote_session,
        });
    }
    if channels.is_empty() {
        return Err(SessionApiError::bad_request(
            "dataChannels must name at least one channel",
        ));
    }
    let opened = state
        .engine
        .call_peer(&session_id, |reply| Command::OpenChannels {
            peer: session_id.clone(),
            channels,
            reply,
        })
        .await?;
    Ok(Json(json!({ "dataChannels": opened })))
}
