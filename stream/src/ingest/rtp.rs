//! Minimal RTP/RTCP header parsing (RFC 3550) for raw RTP sources such as a UDP socket fed by
//! ffmpeg's RTP muxer. The WebRTC media core delivers already-parsed packets.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRtp {
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// Parses an RTP packet; `None` if it is not RTP version 2 or is truncated.
pub fn parse_rtp(datagram: &Bytes) -> Option<ParsedRtp> {
    let b = datagram.as_ref();
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let padding = b[0] & 0x20 != 0;
    let extension = b[0] & 0x10 != 0;
    let csrc_count = usize::from(b[0] & 0x0f);
    let payload_type = b[1] & 0x7f;
    if (72..=79).contains(&payload_type) {
        return None; // RTCP sharing the port (RFC 5761)
    }
    let mut start = 12 + 4 * csrc_count;
    if extension {
        let ext = b.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = b.len();
    if padding {
        let pad = usize::from(*b.last()?);
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(ParsedRtp {
        payload_type,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        marker: b[1] & 0x80 != 0,
        payload: datagram.slice(start..end),
    })
}

/// An RTCP sender report's clock pair: NTP time (64-bit fixed point) and the RTP time of the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub ntp_time: u64,
    pub rtp_time: u32,
}

/// Finds the sender report in a (compound) RTCP packet.
pub fn parse_sender_report(datagram: &[u8]) -> Option<SenderReport> {
    let mut rest = datagram;
    while rest.len() >= 8 {
        if rest[0] >> 6 != 2 {
            return None;
        }
        let length = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if rest[1] == 200 && rest.len() >= 20 {
            return Some(SenderReport {
                ssrc: u32::from_be_bytes(rest[4..8].try_into().ok()?),
                ntp_time: u64::from_be_bytes(rest[8..16].try_into().ok()?),
                rtp_time: u32::from_be_bytes(rest[16..20].try_into().ok()?),
            });
        }
        rest = rest.get(length..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_with_csrc_extension_and_padding() {
        let mut p = vec![
            0xb1, 0xe0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(&[0, 0, 0, 1]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
        p.extend_from_slice(&[9, 9, 9]); // payload
        p.extend_from_slice(&[0, 2]); // two bytes of padding
        let parsed = parse_rtp(&Bytes::from(p)).unwrap();
        assert_eq!(parsed.payload_type, 96);
        assert!(parsed.marker);
        assert_eq!(parsed.seq, 0x1234);
        assert_eq!(parsed.timestamp, 0x1000);
        assert_eq!(&parsed.payload[..], &[9, 9, 9]);
        assert!(parse_rtp(&Bytes::from_static(&[0x80, 0, 0])).is_none());
    }

    #[test]
    fn finds_sender_report() {
        let mut p = vec![0x80, 200, 0, 6, 0, 0, 0, 7];
        p.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        p.extend_from_slice(&90_000u32.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        let sr = parse_sender_report(&p).unwrap();
        assert_eq!(sr.ssrc, 7);
        assert_eq!(sr.ntp_time, 0x0102_0304_0506_0708);
        assert_eq!(sr.rtp_time, 90_000);
        assert!(parse_sender_report(&[0x80, 201, 0, 1, 0, 0, 0, 0]).is_none());
    }
}
