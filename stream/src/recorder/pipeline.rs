//! One broadcast's media path (sans-IO): RTP of a video and an audio track in, closed segments
//! and keyframe requests out. Times in are the caller's monotonic clock in milliseconds.
//!
//! The broadcast timeline starts at the first keyframe. Audio is placed on it through RTCP
//! sender reports when both tracks have one, else through arrival times. A reconnecting
//! publisher ([`Pipeline::resume`]) continues the same timeline where the last one stopped.

use crate::ingest::{
    h264::{H264Depacketizer, H264Event},
    opus::{OpusDepacketizer, OpusFrame},
    sync::ClockAnchor,
    RtpPacket,
};

use super::segmenter::{ClosedSegment, Segmenter};

const VIDEO_RATE: i64 = 90_000;
const AUDIO_RATE: i64 = 48_000;
/// Audio waits this long for sender reports before arrival times place it.
const AUDIO_SYNC_WAIT_MS: i64 = 1000;

#[derive(Debug)]
pub enum PipelineEvent {
    KeyframeNeeded,
    Segment(ClosedSegment),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// Per-publisher ingest state, replaced when a publisher reconnects.
#[derive(Debug, Default)]
struct Ingest {
    h264: H264Depacketizer,
    opus: OpusDepacketizer,
    /// Unwrapped RTP time of the first keyframe and when it arrived.
    video_base: Option<(i64, i64)>,
    audio_base: Option<i64>,
    /// Latest sender reports (NTP, RTP) of each track, resolved against the unwrapped timeline
    /// when used: a report can arrive before the first packet fixes that timeline.
    video_report: Option<(u64, u32)>,
    audio_report: Option<(u64, u32)>,
    /// Audio frames waiting for the timeline to be known, with their arrival times.
    waiting_audio: Vec<(OpusFrame, i64)>,
}

pub struct Pipeline {
    ingest: Ingest,
    segmenter: Segmenter,
    /// Broadcast time (90 kHz) where the current publisher's timeline starts.
    offset: u64,
    pub has_audio: bool,
}

impl Pipeline {
    /// Segments aim at `target_segment_ms` and never outgrow the playlists' `target_duration`
    /// (whole seconds, see [`crate::hls::target_duration_for`]).
    pub fn new(target_segment_ms: u64, target_duration: u64) -> Self {
        Self {
            ingest: Ingest::default(),
            segmenter: Segmenter::new(
                target_segment_ms * 90,
                crate::hls::max_segment_ticks(target_duration),
            ),
            offset: 0,
            has_audio: false,
        }
    }

    pub fn push_rtp(
        &mut self,
        kind: TrackKind,
        packet: &RtpPacket,
        now_ms: i64,
        out: &mut Vec<PipelineEvent>,
    ) {
        match kind {
            TrackKind::Video => self.push_video(packet, now_ms, out),
            TrackKind::Audio => self.push_audio(packet, now_ms),
        }
    }

    pub fn sender_report(&mut self, kind: TrackKind, ntp_time: u64, rtp_time: u32) {
        match kind {
            TrackKind::Video => self.ingest.video_report = Some((ntp_time, rtp_time)),
            TrackKind::Audio => self.ingest.audio_report = Some((ntp_time, rtp_time)),
        }
    }

    fn push_video(&mut self, packet: &RtpPacket, now_ms: i64, out: &mut Vec<PipelineEvent>) {
        let mut events = Vec::new();
        self.ingest.h264.push(packet, &mut events);
        for event in events {
            match event {
                H264Event::KeyframeNeeded => out.push(PipelineEvent::KeyframeNeeded),
                H264Event::AccessUnit(au) => {
                    let (base, _) = *self.ingest.video_base.get_or_insert((au.rtp_time, now_ms));
                    let Ok(relative) = u64::try_from(au.rtp_time - base) else {
                        continue;
                    };
                    let mut closed = Vec::new();
                    self.segmenter.push_video(
                        self.offset + relative,
                        au.keyframe,
                        au.data,
                        au.config,
                        &mut closed,
                    );
                    out.extend(closed.into_iter().map(PipelineEvent::Segment));
                    if self.segmenter.keyframe_overdue() {
                        out.push(PipelineEvent::KeyframeNeeded);
                    }
                }
            }
        }
        self.place_waiting_audio(now_ms);
    }

    fn push_audio(&mut self, packet: &RtpPacket, now_ms: i64) {
        let Some(frame) = self.ingest.opus.push(packet) else {
            return;
        };
        self.has_audio = true;
        if self.ingest.audio_base.is_some() {
            self.push_audio_frame(frame);
        } else {
            self.ingest.waiting_audio.push((frame, now_ms));
            self.place_waiting_audio(now_ms);
        }
    }

    /// Fixes the audio RTP time matching the broadcast start once it can be known.
    fn place_waiting_audio(&mut self, now_ms: i64) {
        let ingest = &mut self.ingest;
        if ingest.audio_base.is_some() || ingest.waiting_audio.is_empty() {
            return;
        }
        let Some((video_base, video_arrival)) = ingest.video_base else {
            // No picture yet: keep only the last second of audio.
            let cutoff = now_ms - AUDIO_SYNC_WAIT_MS;
            ingest
                .waiting_audio
                .retain(|(_, arrived)| *arrived >= cutoff);
            return;
        };
        let waited = ingest
            .waiting_audio
            .first()
            .map_or(0, |(_, arrived)| now_ms - arrived);
        let anchors =
            ingest
                .video_report
                .zip(ingest.audio_report)
                .map(|((v_ntp, v_rtp), (a_ntp, a_rtp))| {
                    (
                        ClockAnchor::new(v_ntp, v_rtp, video_base, VIDEO_RATE as u32),
                        ClockAnchor::new(
                            a_ntp,
                            a_rtp,
                            ingest.waiting_audio[0].0.rtp_time,
                            AUDIO_RATE as u32,
                        ),
                    )
                });
        let base = match anchors {
            Some((video, audio)) => audio.rtp_at(video.seconds_of(video_base)),
            _ if waited >= AUDIO_SYNC_WAIT_MS => {
                let (frame, arrived) = &ingest.waiting_audio[0];
                frame.rtp_time - (arrived - video_arrival) * AUDIO_RATE / 1000
            }
            _ => return,
        };
        ingest.audio_base = Some(base);
        for (frame, _) in std::mem::take(&mut ingest.waiting_audio) {
            self.push_audio_frame(frame);
        }
    }

    fn push_audio_frame(&mut self, frame: OpusFrame) {
        let Some(base) = self.ingest.audio_base else {
            return;
        };
        let Ok(relative) = u64::try_from(frame.rtp_time - base) else {
            return;
        };
        let offset = self.offset * AUDIO_RATE as u64 / VIDEO_RATE as u64;
        self.segmenter
            .push_audio(offset + relative, frame.duration, frame.data);
    }

    /// The publisher left: close the open segment.
    pub fn finish(&mut self, out: &mut Vec<PipelineEvent>) {
        let mut events = Vec::new();
        self.ingest.h264.flush(&mut events);
        for event in events {
            if let H264Event::AccessUnit(au) = event {
                if let Some((base, _)) = self.ingest.video_base {
                    if let Ok(relative) = u64::try_from(au.rtp_time - base) {
                        let mut closed = Vec::new();
                        self.segmenter.push_video(
                            self.offset + relative,
                            au.keyframe,
                            au.data,
                            au.config,
                            &mut closed,
                        );
                        out.extend(closed.into_iter().map(PipelineEvent::Segment));
                    }
                }
            }
        }
        let mut closed = Vec::new();
        self.segmenter.finish(&mut closed);
        out.extend(closed.into_iter().map(PipelineEvent::Segment));
    }

    /// A new publisher continues this broadcast: fresh depacketizers and clocks, same timeline.
    pub fn resume(&mut self) {
        self.offset = self.segmenter.timeline_end();
        self.ingest = Ingest::default();
        self.segmenter.mark_discontinuity();
    }
}
