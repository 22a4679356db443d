//! Opus over RTP (RFC 7587): one packet is one Opus packet; its duration comes from the TOC byte.

use super::{timestamp::TimestampUnwrapper, RtpPacket};

/// Samples at 48 kHz in an Opus packet, from its TOC byte and frame count (RFC 6716 §3.1).
/// `None` for a malformed packet.
pub fn packet_duration_48k(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in 1/10 ms units so 2.5 ms stays an integer.
    let tenths_ms: u32 = match config {
        0..=11 => [100, 200, 400, 600][usize::from(config % 4)],
        12..=15 => [100, 200][usize::from(config % 2)],
        _ => [25, 50, 100, 200][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = tenths_ms * 48 / 10 * frames;
    // RFC 6716: a packet never exceeds 120 ms.
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// A whole Opus packet on the unwrapped 48 kHz RTP timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrame {
    pub rtp_time: i64,
    pub duration: u32,
    pub data: bytes::Bytes,
}

#[derive(Debug, Default)]
pub struct OpusDepacketizer {
    clock: TimestampUnwrapper,
    last_time: Option<i64>,
}

impl OpusDepacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frame in `packet`, or `None` for empty/malformed packets and duplicates.
    pub fn push(&mut self, packet: &RtpPacket) -> Option<OpusFrame> {
        let duration = packet_duration_48k(&packet.payload)?;
        let rtp_time = self.clock.unwrap(packet.timestamp);
        if self.last_time.is_some_and(|last| rtp_time <= last) {
            return None;
        }
        self.last_time = Some(rtp_time);
        Some(OpusFrame {
            rtp_time,
            duration,
            data: packet.payload.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        // CELT fullband 20 ms, one frame (what WebRTC sends).
        assert_eq!(packet_duration_48k(&[0xfc, 0, 0]), Some(960));
        // SILK 60 ms, two frames of equal size.
        assert_eq!(packet_duration_48k(&[(3 << 3) | 1]), Some(5760));
        // CELT 2.5 ms, code 3 with 4 frames.
        assert_eq!(packet_duration_48k(&[(16 << 3) | 3, 4]), Some(480));
        // Code 3 claiming 0 frames or more than 120 ms is malformed.
        assert_eq!(packet_duration_48k(&[(16 << 3) | 3, 0]), None);
        assert_eq!(packet_duration_48k(&[(3 << 3) | 3, 3]), None);
        assert_eq!(packet_duration_48k(&[]), None);
    }
}
