//! H264 over RTP (RFC 6184, packetization-mode 1): single NAL units, STAP-A and FU-A are
//! reassembled into access units of 4-byte length-prefixed NAL units (the MP4 `avc1` layout).
//!
//! SPS/PPS are pulled out of the stream into an [`AvcConfig`] (they belong in `avcC`, not in
//! samples); access unit delimiters are dropped. After any sequence gap the partial access unit
//! is thrown away and everything is dropped until the next IDR, with a [`H264Event::KeyframeNeeded`]
//! so the shell can send a PLI. The same happens on start, so a recording begins at a keyframe.

use bytes::Bytes;

use super::{
    timestamp::{SeqUnwrapper, TimestampUnwrapper},
    RtpPacket,
};

const NAL_SLICE_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// The decoder configuration carried in `avcC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

impl AvcConfig {
    pub fn profile(&self) -> u8 {
        self.sps.get(1).copied().unwrap_or(0)
    }
    pub fn compatibility(&self) -> u8 {
        self.sps.get(2).copied().unwrap_or(0)
    }
    pub fn level(&self) -> u8 {
        self.sps.get(3).copied().unwrap_or(0)
    }
    /// RFC 6381 codec string, e.g. `avc1.42e01f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile(),
            self.compatibility(),
            self.level()
        )
    }

    /// Builds a config from raw SPS/PPS NAL units (with their one-byte headers).
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Option<Self> {
        let (width, height) = sps_dimensions(sps)?;
        Some(Self {
            sps: sps.to_vec(),
            pps: pps.to_vec(),
            width,
            height,
        })
    }
}

/// Picture size from an SPS NAL unit (header byte included), after cropping (H.264 §7.3.2.1.1).
pub fn sps_dimensions(sps_nal: &[u8]) -> Option<(u16, u16)> {
    let rbsp = remove_emulation_prevention(sps_nal.get(1..)?);
    let mut bits = BitReader {
        data: &rbsp,
        position: 0,
    };
    let profile_idc = bits.bits(8)?;
    bits.bits(16)?; // constraint flags, level
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            bits.bits(1)?; // separate_colour_plane_flag
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bits(1)? == 1 {
                    bits.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?;
        }
        1 => {
            bits.bits(1)?;
            bits.se()?;
            bits.se()?;
            for _ in 0..bits.ue()?.min(255) {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_map_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.bits(1)? as u64;
    if frame_mbs_only == 0 {
        bits.bits(1)?; // mb_adaptive_frame_field_flag
    }
    bits.bits(1)?; // direct_8x8_inference_flag
    let mut width = width_mbs * 16;
    let mut height = height_map_units * 16 * (2 - frame_mbs_only);
    if bits.bits(1)? == 1 {
        let (left, right, top, bottom) = (
            bits.ue()? as u64,
            bits.ue()? as u64,
            bits.ue()? as u64,
            bits.ue()? as u64,
        );
        let (unit_x, unit_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        width = width.checked_sub(unit_x * (left + right))?;
        height = height.checked_sub(unit_y * (top + bottom))?;
    }
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// Reads bits and Exp-Golomb codes from an RBSP.
struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.position / 8)?;
            let bit = (byte >> (7 - self.position % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.position += 1;
        }
        Some(value)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i32, 8i32);
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()? + 256) % 256;
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

fn remove_emulation_prevention(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &byte in ebsp {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A complete picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Unwrapped 90 kHz RTP time.
    pub rtp_time: i64,
    pub keyframe: bool,
    /// 4-byte big-endian length-prefixed NAL units, without SPS/PPS/AUD.
    pub data: Bytes,
    /// The decoder configuration in force for this access unit (shared until it changes).
    pub config: std::sync::Arc<AvcConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H264Event {
    AccessUnit(AccessUnit),
    /// Ask the publisher for an IDR (PLI/FIR): the stream starts or lost data.
    KeyframeNeeded,
}

#[derive(Debug)]
pub struct H264Depacketizer {
    seq: SeqUnwrapper,
    clock: TimestampUnwrapper,
    last_seq: Option<i64>,
    /// NAL units of the access unit being assembled.
    current: Vec<Bytes>,
    current_time: Option<i64>,
    current_has_idr: bool,
    fragment: Option<Vec<u8>>,
    /// True until an IDR with known parameter sets arrives (at start and after loss).
    waiting_for_keyframe: bool,
    keyframe_requested: bool,
    pending_sps: Option<Vec<u8>>,
    pending_pps: Option<Vec<u8>>,
    config: Option<std::sync::Arc<AvcConfig>>,
    /// Access units dropped while waiting for a keyframe (for stats and tests).
    pub dropped_access_units: u64,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    pub fn new() -> Self {
        Self {
            seq: SeqUnwrapper::new(),
            clock: TimestampUnwrapper::new(),
            last_seq: None,
            current: Vec::new(),
            current_time: None,
            current_has_idr: false,
            fragment: None,
            waiting_for_keyframe: true,
            keyframe_requested: false,
            pending_sps: None,
            pending_pps: None,
            config: None,
            dropped_access_units: 0,
        }
    }

    pub fn config(&self) -> Option<&std::sync::Arc<AvcConfig>> {
        self.config.as_ref()
    }

    pub fn push(&mut self, packet: &RtpPacket, out: &mut Vec<H264Event>) {
        let seq = self.seq.unwrap(u32::from(packet.seq));
        if let Some(last) = self.last_seq {
            if seq <= last {
                return; // duplicate or late: its access unit is already gone
            }
            if seq != last + 1 {
                self.lose(out);
            }
        }
        self.last_seq = Some(seq);
        if packet.payload.is_empty() {
            // Padding only (libwebrtc probes bandwidth this way on the media SSRC when no RTX is
            // negotiated): it takes a sequence number but carries no media and no loss.
            return;
        }
        let time = self.clock.unwrap(packet.timestamp);
        if self.current_time.is_some_and(|t| t != time) {
            // The marker of the previous access unit was lost or never sent.
            self.finish_access_unit(out);
        }
        self.current_time = Some(time);
        if !self.depacketize(&packet.payload) {
            self.lose(out);
            return;
        }
        if packet.marker {
            self.finish_access_unit(out);
        }
        if self.waiting_for_keyframe && !self.keyframe_requested {
            self.keyframe_requested = true;
            out.push(H264Event::KeyframeNeeded);
        }
    }

    /// Appends the NAL units of one payload; false if the payload is malformed or unsupported.
    fn depacketize(&mut self, payload: &Bytes) -> bool {
        let Some(&header) = payload.first() else {
            return false;
        };
        match header & 0x1f {
            1..=23 => {
                self.fragment = None;
                self.add_nal(payload.clone());
                true
            }
            NAL_STAP_A => {
                self.fragment = None;
                let mut offset = 1;
                while offset < payload.len() {
                    let Some(len_bytes) = payload.get(offset..offset + 2) else {
                        return false;
                    };
                    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                    offset += 2;
                    if len == 0 || offset + len > payload.len() {
                        return false;
                    }
                    self.add_nal(payload.slice(offset..offset + len));
                    offset += len;
                }
                true
            }
            NAL_FU_A => {
                let Some(&fu_header) = payload.get(1) else {
                    return false;
                };
                let start = fu_header & 0x80 != 0;
                let end = fu_header & 0x40 != 0;
                if start {
                    let mut nal = Vec::with_capacity(payload.len() * 4);
                    nal.push((header & 0xe0) | (fu_header & 0x1f));
                    nal.extend_from_slice(&payload[2..]);
                    self.fragment = Some(nal);
                } else {
                    let Some(fragment) = self.fragment.as_mut() else {
                        return false;
                    };
                    fragment.extend_from_slice(&payload[2..]);
                }
                if end {
                    if let Some(nal) = self.fragment.take() {
                        self.add_nal(Bytes::from(nal));
                    }
                }
                true
            }
            _ => false, // STAP-B, MTAP, FU-B: not used by WebRTC senders
        }
    }

    fn add_nal(&mut self, nal: Bytes) {
        let Some(&header) = nal.first() else { return };
        match header & 0x1f {
            NAL_SPS => self.pending_sps = Some(nal.to_vec()),
            NAL_PPS => self.pending_pps = Some(nal.to_vec()),
            NAL_AUD => {}
            kind => {
                if kind == NAL_SLICE_IDR {
                    self.current_has_idr = true;
                }
                self.current.push(nal);
            }
        }
    }

    fn lose(&mut self, out: &mut Vec<H264Event>) {
        self.current.clear();
        self.current_has_idr = false;
        self.fragment = None;
        if !self.waiting_for_keyframe || !self.keyframe_requested {
            out.push(H264Event::KeyframeNeeded);
        }
        self.waiting_for_keyframe = true;
        self.keyframe_requested = true;
    }

    fn finish_access_unit(&mut self, out: &mut Vec<H264Event>) {
        let nals = std::mem::take(&mut self.current);
        let keyframe = std::mem::replace(&mut self.current_has_idr, false);
        let Some(time) = self.current_time else {
            return;
        };
        if self.fragment.take().is_some() {
            // The access unit ended inside a fragment: its last NAL unit is incomplete.
            self.lose(out);
            return;
        }
        if nals.is_empty() {
            return; // parameter sets alone: keep them for the next picture
        }
        if let (Some(sps), Some(pps)) = (&self.pending_sps, &self.pending_pps) {
            let changed = self
                .config
                .as_ref()
                .is_none_or(|c| &c.sps != sps || &c.pps != pps);
            if changed && keyframe {
                match AvcConfig::from_parameter_sets(sps, pps) {
                    Some(config) => self.config = Some(std::sync::Arc::new(config)),
                    None => tracing::warn!("unparseable SPS; waiting for the next one"),
                }
            }
        }
        if self.waiting_for_keyframe {
            if !(keyframe && self.config.is_some()) {
                self.dropped_access_units += 1;
                return;
            }
            self.waiting_for_keyframe = false;
            self.keyframe_requested = false;
        }
        let Some(config) = self.config.clone() else {
            return;
        };
        let size: usize = nals.iter().map(|n| n.len() + 4).sum();
        let mut data = Vec::with_capacity(size);
        for nal in &nals {
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        out.push(H264Event::AccessUnit(AccessUnit {
            rtp_time: time,
            keyframe,
            data: Bytes::from(data),
            config,
        }));
    }

    /// Emits the access unit still being assembled (end of stream).
    pub fn flush(&mut self, out: &mut Vec<H264Event>) {
        if self.fragment.is_none() {
            self.finish_access_unit(out);
        }
        self.current_time = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real 640x360 constrained-baseline SPS/PPS pair as x264 writes it.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn pkt(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
        RtpPacket {
            seq,
            timestamp: ts,
            marker,
            payload: Bytes::from(payload),
        }
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x18];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    fn access_units(events: &[H264Event]) -> Vec<&AccessUnit> {
        events
            .iter()
            .filter_map(|e| {
                if let H264Event::AccessUnit(au) = e {
                    Some(au)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn sps_gives_dimensions() {
        assert_eq!(sps_dimensions(SPS), Some((640, 360)));
        let config = AvcConfig::from_parameter_sets(SPS, PPS).unwrap();
        assert_eq!(config.codec_string(), "avc1.42c01e");
    }

    #[test]
    fn reassembles_stap_a_and_fu_a_and_strips_parameter_sets() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000).map(|i| (i % 251) as u8))
            .collect();
        d.push(
            &pkt(10, 1000, false, stap_a(&[&[0x09, 0xf0], SPS, PPS])),
            &mut out,
        );
        // FU-A in three parts.
        let body = &idr[1..];
        d.push(
            &pkt(
                11,
                1000,
                false,
                [vec![0x7c, 0x85], body[..1000].to_vec()].concat(),
            ),
            &mut out,
        );
        d.push(
            &pkt(
                12,
                1000,
                false,
                [vec![0x7c, 0x05], body[1000..2000].to_vec()].concat(),
            ),
            &mut out,
        );
        d.push(
            &pkt(
                13,
                1000,
                true,
                [vec![0x7c, 0x45], body[2000..].to_vec()].concat(),
            ),
            &mut out,
        );
        d.push(&pkt(14, 4000, true, vec![0x41, 1, 2, 3]), &mut out);
        let aus = access_units(&out);
        assert_eq!(aus.len(), 2);
        assert!(aus[0].keyframe);
        assert_eq!(&aus[0].data[..4], &(idr.len() as u32).to_be_bytes());
        assert_eq!(&aus[0].data[4..], &idr[..]);
        assert_eq!(aus[0].config.sps, SPS);
        assert!(!aus[1].keyframe);
        assert_eq!(&aus[1].data[..], &[0, 0, 0, 4, 0x41, 1, 2, 3]);
        assert_eq!(aus[1].rtp_time - aus[0].rtp_time, 3000);
        // The stream started without a keyframe known: one request at the start only.
        assert_eq!(
            out.iter()
                .filter(|e| **e == H264Event::KeyframeNeeded)
                .count(),
            1
        );
    }

    #[test]
    fn loss_drops_until_next_idr_and_requests_a_keyframe() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, stap_a(&[SPS, PPS])), &mut out);
        d.push(&pkt(2, 0, true, vec![0x65, 9]), &mut out);
        d.push(&pkt(3, 3000, true, vec![0x41, 1]), &mut out);
        out.clear();
        // Packet 4 is lost: a fragment of picture 9000 starts at 5.
        d.push(&pkt(5, 6000, true, vec![0x41, 2]), &mut out);
        assert_eq!(out, vec![H264Event::KeyframeNeeded]);
        d.push(&pkt(6, 9000, true, vec![0x41, 3]), &mut out);
        d.push(&pkt(7, 12000, true, vec![0x65, 4]), &mut out);
        let aus = access_units(&out);
        assert_eq!(aus.len(), 1);
        assert!(aus[0].keyframe);
        assert_eq!(aus[0].rtp_time, 12000);
        assert_eq!(d.dropped_access_units, 2);
    }

    #[test]
    fn padding_only_packets_are_not_loss() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, stap_a(&[SPS, PPS])), &mut out);
        d.push(&pkt(2, 0, true, vec![0x65, 9]), &mut out);
        // Bandwidth probes between pictures: sequence numbers, the last picture's timestamp, no payload.
        d.push(&pkt(3, 0, false, Vec::new()), &mut out);
        d.push(&pkt(4, 0, false, Vec::new()), &mut out);
        d.push(&pkt(5, 3000, true, vec![0x41, 1]), &mut out);
        // Only the request every stream starts with.
        let requests = out
            .iter()
            .filter(|e| **e == H264Event::KeyframeNeeded)
            .count();
        assert_eq!(requests, 1, "{out:?}");
        let times: Vec<i64> = access_units(&out).iter().map(|au| au.rtp_time).collect();
        assert_eq!(times, vec![0, 3000]);
        assert_eq!(d.dropped_access_units, 0);
    }

    #[test]
    fn missing_marker_still_splits_on_timestamp_change_and_malformed_input_is_loss() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, stap_a(&[SPS, PPS])), &mut out);
        d.push(&pkt(2, 0, false, vec![0x65, 9]), &mut out);
        d.push(&pkt(3, 3000, false, vec![0x41, 1]), &mut out);
        assert_eq!(access_units(&out).len(), 1);
        out.clear();
        // A truncated STAP-A counts as loss (the picture at 3000 was complete and still comes out).
        d.push(&pkt(4, 6000, true, vec![0x18, 0x00, 0x09, 0x41]), &mut out);
        assert!(out.contains(&H264Event::KeyframeNeeded));
        // A middle fragment without a start is also loss; nothing after 3000 is emitted.
        d.push(&pkt(5, 9000, true, vec![0x7c, 0x05, 1]), &mut out);
        d.push(&pkt(6, 12000, true, vec![0x41, 2]), &mut out);
        let times: Vec<i64> = access_units(&out).iter().map(|au| au.rtp_time).collect();
        assert_eq!(times, vec![3000]);
    }
}
