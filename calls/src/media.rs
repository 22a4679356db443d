//! `calls::media`: the SFU's media core for other products (Stream's WHIP/WHEP and recorder).
//!
//! Everything runs on the Calls engine — the same UDP port, ICE-lite, str0m — so a WHIP
//! broadcaster is just a publishing peer and a WHEP viewer a subscribing one:
//!
//! ```text
//! let media = calls.media();
//! let published = media.publish(account, &offer_sdp).await?;      // WHIP: answer + track ids
//! let mut rtp = media.tap(&published.tracks[0].id)?;               // recorder: every RTP packet
//! let viewer = media.subscribe(account, &whep_offer, &ids).await?; // WHEP: answer
//! media.close(&published.peer).await;                              // DELETE of the WHIP resource
//! ```
//!
//! Egress bytes to viewers are metered as `calls.egress_bytes` of `account_id`, like any
//! Calls subscriber.

use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::sfu::{
    engine::Engine,
    types::{Command, Kind, Owner, SfuError},
};

/// Identifies a peer connection (one WHIP or WHEP session).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId(pub String);

/// Identifies a published track; pass it to [`MediaCore::tap`] or [`MediaCore::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackId(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

impl From<Kind> for MediaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// The negotiated codec of a published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// `"opus"`, `"VP8"`, `"H264"`, `"VP9"`, `"AV1"`.
    pub name: String,
    pub clock_rate: u32,
    /// The fmtp line's parameters (e.g. `profile-level-id=42e01f;packetization-mode=1`).
    pub fmtp: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PublishedTrack {
    pub id: TrackId,
    pub kind: MediaKind,
    pub codec: Codec,
    pub mid: String,
}

#[derive(Debug, Clone)]
pub struct Published {
    pub peer: PeerId,
    pub answer_sdp: String,
    pub tracks: Vec<PublishedTrack>,
}

#[derive(Debug, Clone)]
pub struct Subscribed {
    pub peer: PeerId,
    pub answer_sdp: String,
}

/// One RTP packet of a published track, after SRTP, as the publisher sent it.
#[derive(Debug, Clone)]
pub struct TapPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub payload: bytes::Bytes,
    pub received: Instant,
}

#[derive(Debug, Clone)]
pub enum TapEvent {
    Rtp(TapPacket),
    /// An RTCP sender report: `ntp_time` is NTP 64-bit fixed point, `rtp_time` the matching RTP time.
    SenderReport {
        ntp_time: u64,
        rtp_time: u32,
    },
    /// The track was unpublished or its peer closed; no more events follow.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Connecting,
    Connected,
    Disconnected,
    Closed,
}

/// Errors of the media interface. [`MediaError::status`] gives the HTTP status to answer with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    #[error("the offer has no codec we support")]
    NoSupportedCodec,
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("unknown peer")]
    UnknownPeer,
    #[error("unknown track")]
    UnknownTrack,
    #[error("the media engine is shutting down")]
    Unavailable,
}

impl MediaError {
    pub fn status(&self) -> u16 {
        match self {
            MediaError::BadSdp(_) => 400,
            MediaError::NoSupportedCodec => 415,
            MediaError::Limit(_) => 413,
            MediaError::UnknownPeer | MediaError::UnknownTrack => 404,
            MediaError::Unavailable => 503,
        }
    }
}

impl From<SfuError> for MediaError {
    fn from(e: SfuError) -> Self {
        match e {
            SfuError::BadSdp(m) => MediaError::BadSdp(m),
            SfuError::NoCodec => MediaError::NoSupportedCodec,
            SfuError::Limit(m) => MediaError::Limit(m),
            SfuError::NotFound("track") => MediaError::UnknownTrack,
            SfuError::NotFound(_) => MediaError::UnknownPeer,
            SfuError::NothingPending | SfuError::AlreadyPending => {
                MediaError::BadSdp(e.to_string())
            }
            SfuError::ShuttingDown => MediaError::Unavailable,
        }
    }
}

/// Capacity of a tap's queue; a tap that falls this far behind loses packets (the SFU never
/// blocks on a slow consumer).
pub const TAP_QUEUE: usize = 4096;

/// Cheap-to-clone handle to the Calls media engine for other products.
#[derive(Clone)]
pub struct MediaCore {
    pub(crate) engine: Engine,
}

fn account_key(account_id: &str) -> String {
    format!("media:{account_id}")
}

impl MediaCore {
    /// WHIP-style publish: a sendonly offer in, our answer (ICE-lite, `a=setup:passive`, our one
    /// UDP candidate) out. Every transceiver that sends us media with a supported codec becomes
    /// a published track.
    pub async fn publish(
        &self,
        account_id: &str,
        offer_sdp: &str,
    ) -> Result<Published, MediaError> {
        let key = account_key(account_id);
        let (peer, _) = self
            .engine
            .create_peer(&key, account_id, Owner::Media, None)
            .await?;
        let shard = self.engine.shard_for_key(&key);
        let result = self
            .engine
            .call(shard, |reply| Command::Publish {
                peer: peer.clone(),
                offer: offer_sdp.to_owned(),
                reply,
            })
            .await;
        match result {
            Ok((answer_sdp, tracks)) => Ok(Published {
                peer: PeerId(peer),
                answer_sdp,
                tracks: tracks
                    .into_iter()
                    .filter_map(|t| {
                        Some(PublishedTrack {
                            id: TrackId(t.track_id),
                            kind: t.kind.into(),
                            codec: t.codec?,
                            mid: t.mid,
                        })
                    })
                    .collect(),
            }),
            Err(e) => {
                self.close(&PeerId(peer)).await;
                Err(e.into())
            }
        }
    }

    /// A copy of every RTP packet of a published track (plus sender reports, and `Ended`).
    pub fn tap(&self, track: &TrackId) -> Result<mpsc::Receiver<TapEvent>, MediaError> {
        let shard = self
            .engine
            .directory()
            .track(&track.0)
            .ok_or(MediaError::UnknownTrack)?;
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        self.engine.send(
            shard,
            Command::Tap {
                track: track.0.clone(),
                tx,
            },
        )?;
        Ok(rx)
    }

    /// Asks the track's publisher for a keyframe (PLI); at most one per 500 ms reaches it.
    pub fn request_keyframe(&self, track: &TrackId) {
        if let Some(shard) = self.engine.directory().track(&track.0) {
            let _ = self.engine.send(
                shard,
                Command::RequestKeyframe {
                    track: track.0.clone(),
                },
            );
        }
    }

    /// WHEP-style subscribe: a recvonly offer in; the answer sends these published tracks, each
    /// on the next offered transceiver of its kind.
    pub async fn subscribe(
        &self,
        account_id: &str,
        offer_sdp: &str,
        tracks: &[TrackId],
    ) -> Result<Subscribed, MediaError> {
        let key = account_key(account_id);
        let shard = self.engine.shard_for_key(&key);
        for t in tracks {
            if self.engine.directory().track(&t.0) != Some(shard) {
                return Err(MediaError::UnknownTrack);
            }
        }
        let (peer, _) = self
            .engine
            .create_peer(&key, account_id, Owner::Media, None)
            .await?;
        let ids = tracks.iter().map(|t| t.0.clone()).collect();
        match self
            .engine
            .call(shard, |reply| Command::Subscribe {
                peer: peer.clone(),
                offer: offer_sdp.to_owned(),
                tracks: ids,
                reply,
            })
            .await
        {
            Ok(answer_sdp) => Ok(Subscribed {
                peer: PeerId(peer),
                answer_sdp,
            }),
            Err(e) => {
                self.close(&PeerId(peer)).await;
                Err(e.into())
            }
        }
    }

    /// Connection state of a peer: Connecting → Connected → Disconnected/Closed.
    pub fn peer_state(&self, peer: &PeerId) -> Option<watch::Receiver<PeerState>> {
        self.engine.peer(&peer.0).map(|e| e.state)
    }

    /// Closes a peer; its tracks end (taps get `Ended`). Unknown peers are ignored.
    pub async fn close(&self, peer: &PeerId) {
        let _ = self
            .engine
            .call_peer(&peer.0, |reply| Command::ClosePeer {
                peer: peer.0.clone(),
                reply,
            })
            .await;
    }
}
