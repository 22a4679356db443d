//! Plain data exchanged between the HTTP/media handles and the shards.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::media::{PeerState, TapEvent};

/// Who created a peer: a Calls app (sessions API) or another product through `calls::media`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    App(String),
    Media,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl From<str0m::media::MediaKind> for Kind {
    fn from(k: str0m::media::MediaKind) -> Self {
        match k {
            str0m::media::MediaKind::Audio => Kind::Audio,
            str0m::media::MediaKind::Video => Kind::Video,
        }
    }
}

impl From<Kind> for str0m::media::MediaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Audio => str0m::media::MediaKind::Audio,
            Kind::Video => str0m::media::MediaKind::Video,
        }
    }
}

/// Errors of the media core; the API layers map them to statuses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SfuError {
    #[error("invalid session description: {0}")]
    BadSdp(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no renegotiation is pending for this session")]
    NothingPending,
    #[error("a renegotiation is already pending; answer it first")]
    AlreadyPending,
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("no supported codec in the offer")]
    NoCodec,
    #[error("the media engine is shutting down")]
    ShuttingDown,
}

/// A track to publish from the caller's offer: `mid` names the transceiver.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub name: String,
    pub mid: Option<String>,
}

/// A track to receive: published as `name` by session `session`.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub session: String,
    pub name: String,
}

/// The outcome for one requested track; `error` is `(code, description)`.
#[derive(Debug, Clone, Serialize)]
pub struct TrackResult {
    pub location: &'static str,
    #[serde(rename = "trackName")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(rename = "errorDescription", skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl TrackResult {
    pub fn failed(mut self, code: &'static str, description: impl Into<String>) -> Self {
        self.error_code = Some(code);
        self.error_description = Some(description.into());
        self
    }
}

#[derive(Debug, Clone)]
pub struct NegotiationOutcome {
    /// Our SDP (an answer for pushes and closes, an offer for pulls), if any.
    pub sdp: Option<(SdpKind, String)>,
    pub tracks: Vec<TrackResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
}

/// A track as reported by `GET sessions/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct TrackStatus {
    pub location: &'static str,
    pub mid: String,
    #[serde(rename = "trackName")]
    pub name: String,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub kind: Kind,
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    pub location: &'static str,
    #[serde(rename = "dataChannelName")]
    pub name: String,
    pub id: u16,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    pub tracks: Vec<TrackStatus>,
    #[serde(rename = "dataChannels")]
    pub data_channels: Vec<ChannelStatus>,
    #[serde(rename = "connectionState")]
    pub connection_state: PeerState,
}

/// A data channel to open: `location` local publishes `name`; remote subscribes to `session`'s.
#[derive(Debug, Clone)]
pub struct ChannelRequest {
    pub name: String,
    pub remote_session: Option<String>,
}

/// What a `calls::media` publish produced per track.
#[derive(Debug, Clone)]
pub struct PublishedInfo {
    pub track_id: String,
    pub mid: String,
    pub kind: Kind,
    pub codec: Option<crate::media::Codec>,
}

pub type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// A remote address that began (`Opened`) or stopped (`Closed`) carrying one peer's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChange {
    Opened(std::net::SocketAddr),
    Closed(std::net::SocketAddr),
}

/// A request to a shard. Each carries its reply channel.
pub enum Command {
    CreatePeer {
        peer: String,
        account: String,
        owner: Owner,
        offer: Option<String>,
        state: watch::Sender<PeerState>,
        reply: Reply<Option<String>>,
    },
    PushTracks {
        peer: String,
        offer: String,
        tracks: Vec<PushRequest>,
        reply: Reply<NegotiationOutcome>,
    },
    PullTracks {
        peer: String,
        tracks: Vec<PullRequest>,
        reply: Reply<NegotiationOutcome>,
    },
    Renegotiate {
        peer: String,
        answer: String,
        reply: Reply<()>,
    },
    CloseTracks {
        peer: String,
        mids: Vec<String>,
        offer: Option<String>,
        force: bool,
        reply: Reply<NegotiationOutcome>,
    },
    UpdateTracks {
        peer: String,
        updates: Vec<(String, PullRequest)>,
        reply: Reply<Vec<TrackResult>>,
    },
    OpenChannels {
        peer: String,
        channels: Vec<ChannelRequest>,
        reply: Reply<Vec<ChannelStatus>>,
    },
    Status {
        peer: String,
        reply: Reply<SessionStatus>,
    },
    Stats {
        peer: String,
        reply: Reply<serde_json::Value>,
    },
    ClosePeer {
        peer: String,
        reply: Reply<()>,
    },
    /// `calls::media`: accept a publisher's offer and publish every received transceiver.
    Publish {
        peer: String,
        offer: String,
        reply: Reply<(String, Vec<PublishedInfo>)>,
    },
    /// `calls::media`: accept a viewer's offer and send it these tracks.
    Subscribe {
        peer: String,
        offer: String,
        tracks: Vec<String>,
        reply: Reply<String>,
    },
    Tap {
        track: String,
        tx: mpsc::Sender<TapEvent>,
    },
    RequestKeyframe {
        track: String,
    },
}
