//! MP4 writing (mp4-atom): fragmented MP4 (CMAF) init and media segments for HLS, progressive MP4
//! clips with an edit list, and reading our own segments back for clipping.

pub mod clip;
pub mod fmp4;
pub mod read;

use bytes::Bytes;

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
pub const VIDEO_TIMESCALE: u32 = 90_000;
pub const AUDIO_TIMESCALE: u32 = 48_000;

/// ISO BMFF sample flags: a sync sample (depends on no other).
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// A non-sync sample that depends on others.
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// One coded frame on its track's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale, counted from the broadcast start.
    pub decode_time: u64,
    pub duration: u32,
    pub sync: bool,
    pub data: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("mp4: {0}")]
    Atom(#[from] mp4_atom::Error),
    #[error("malformed segment: {0}")]
    Malformed(&'static str),
}

/// The Opus sample entry configuration (RFC 7845 in MP4: dOps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    pub channels: u8,
}
