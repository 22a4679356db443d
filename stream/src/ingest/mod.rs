//! Ingest: RTP packets in, timed access units out (sans-IO).
//!
//! Each published track gets a depacketizer (H264 or Opus) that turns RTP payloads into whole
//! frames on an unwrapped 64-bit timeline, and tells the caller when a keyframe must be requested
//! from the publisher (on start and after loss). [`sync::TrackClock`] maps those RTP times onto the
//! broadcast's common timeline through RTCP sender reports so audio and video line up.

pub mod h264;
pub mod opus;
pub mod rtp;
pub mod sync;
pub mod timestamp;

/// One RTP packet as the media core hands it over (after SRTP).
#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: bytes::Bytes,
}
