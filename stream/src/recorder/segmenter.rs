//! Cuts the broadcast timeline into media segments (sans-IO).
//!
//! Video access units and audio frames come in on the broadcast timeline (90 kHz / 48 kHz from
//! the broadcast start). A segment closes at the first keyframe after the target duration, or
//! at a keyframe whose decoder configuration changed (that one starts a new init and a
//! discontinuity). Sample durations are the distance to the next sample, so one sample of each
//! track is held back until its successor arrives.

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    ingest::h264::AvcConfig,
    mux::{Sample, AUDIO_TIMESCALE, VIDEO_TIMESCALE},
};

/// A closed segment, ready to be muxed and stored.
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    pub sequence: u32,
    /// Index of the init segment (decoder configuration) these samples need.
    pub init_index: u32,
    /// Set on the first segment of an init: the configuration to write as that init.
    pub new_init: Option<Arc<AvcConfig>>,
    /// The player must reset its decoder before this segment (new init or timeline jump).
    pub discontinuity: bool,
    /// Start and length on the broadcast timeline, 90 kHz.
    pub start: u64,
    pub duration: u64,
    pub video: Vec<Sample>,
    pub audio: Vec<Sample>,
}

#[derive(Debug)]
struct PendingVideo {
    time: u64,
    keyframe: bool,
    data: Bytes,
    config: Arc<AvcConfig>,
}

#[derive(Debug)]
pub struct Segmenter {
    target: u64,
    sequence: u32,
    init_index: u32,
    config: Option<Arc<AvcConfig>>,
    new_init: Option<Arc<AvcConfig>>,
    discontinuity: bool,
    segment_start: Option<u64>,
    video: Vec<Sample>,
    pending_video: Option<PendingVideo>,
    last_video_duration: u32,
    audio: Vec<Sample>,
    pending_audio: Option<(u64, u32, Bytes)>,
    /// End of the last closed segment (where a resumed broadcast continues).
    end: u64,
}

impl Segmenter {
    /// `target` is the segment duration in 90 kHz ticks.
    pub fn new(target: u64) -> Self {
        Self {
            target,
            sequence: 0,
            init_index: 0,
            config: None,
            new_init: None,
            discontinuity: false,
            segment_start: None,
            video: Vec::new(),
            pending_video: None,
            last_video_duration: 3000,
            audio: Vec::new(),
            pending_audio: None,
            end: 0,
        }
    }

    /// Where the timeline continues after everything pushed so far (90 kHz).
    pub fn timeline_end(&self) -> u64 {
        match &self.pending_video {
            Some(p) => p.time + u64::from(self.last_video_duration),
            None => self.end,
        }
    }

    /// True when the open segment has reached the target and the latest access unit is not a
    /// keyframe. WebRTC encoders (Chromium's OpenH264, libwebrtc's VP8) send keyframes only at the
    /// start and when asked, so without a request a segment would never close.
    pub fn keyframe_overdue(&self) -> bool {
        match (&self.pending_video, self.segment_start) {
            (Some(pending), Some(start)) => {
                !pending.keyframe && pending.time.saturating_sub(start) >= self.target
            }
            _ => false,
        }
    }

    /// Adds an access unit at `time` (90 kHz). Non-increasing times are dropped.
    pub fn push_video(
        &mut self,
        time: u64,
        keyframe: bool,
        data: Bytes,
        config: Arc<AvcConfig>,
        out: &mut Vec<ClosedSegment>,
    ) {
        if let Some(pending) = self.pending_video.take() {
            if time <= pending.time {
                self.pending_video = Some(pending);
                return;
            }
            let duration = u32::try_from(time - pending.time).unwrap_or(u32::MAX);
            self.last_video_duration = duration;
            self.accept_video(pending, duration);
        } else if self.segment_start.is_none() && !keyframe {
            return; // a segment must start with a keyframe
        }
        // Decide whether the segment ends before this access unit.
        if let Some(start) = self.segment_start {
            let config_changed = self
                .config
                .as_ref()
                .is_some_and(|c| c.as_ref() != config.as_ref());
            if keyframe && (time.saturating_sub(start) >= self.target || config_changed) {
                self.close(time, out);
            }
        }
        self.pending_video = Some(PendingVideo {
            time,
            keyframe,
            data,
            config,
        });
    }

    fn accept_video(&mut self, sample: PendingVideo, duration: u32) {
        if self.segment_start.is_none() {
            self.segment_start = Some(sample.time);
            let changed = self
                .config
                .as_ref()
                .is_none_or(|c| c.as_ref() != sample.config.as_ref());
            if changed {
                if self.config.is_some() {
                    self.init_index += 1;
                    self.discontinuity = true;
                }
                self.new_init = Some(sample.config.clone());
                self.config = Some(sample.config.clone());
            }
        }
        self.video.push(Sample {
            decode_time: sample.time,
            duration,
            sync: sample.keyframe,
            data: sample.data,
        });
    }

    /// Adds an Opus frame at `time` (48 kHz) lasting `duration` by its TOC.
    pub fn push_audio(&mut self, time: u64, duration: u32, data: Bytes) {
        if let Some((pending_time, pending_duration, pending_data)) = self.pending_audio.take() {
            if time <= pending_time {
                self.pending_audio = Some((pending_time, pending_duration, pending_data));
                return;
            }
            // A gap (DTX, loss) stretches the previous frame so later frames keep their times.
            let gap = u32::try_from(time - pending_time).unwrap_or(u32::MAX);
            let duration = if gap < pending_duration {
                pending_duration.min(gap)
            } else {
                gap
            };
            self.audio.push(Sample {
                decode_time: pending_time,
                duration,
                sync: true,
                data: pending_data,
            });
        }
        self.pending_audio = Some((time, duration, data));
    }

    fn close(&mut self, end: u64, out: &mut Vec<ClosedSegment>) {
        let Some(start) = self.segment_start.take() else {
            return;
        };
        let audio_end = end * u64::from(AUDIO_TIMESCALE) / u64::from(VIDEO_TIMESCALE);
        if let Some((time, duration, _)) = &self.pending_audio {
            if *time < audio_end {
                let (time, duration, data) = (
                    *time,
                    *duration,
                    self.pending_audio.take().map(|p| p.2).unwrap_or_default(),
                );
                self.audio.push(Sample {
                    decode_time: time,
                    duration,
                    sync: true,
                    data,
                });
            }
        }
        let split = self
            .audio
            .iter()
            .position(|s| s.decode_time >= audio_end)
            .unwrap_or(self.audio.len());
        let rest = self.audio.split_off(split);
        let audio = std::mem::replace(&mut self.audio, rest);
        out.push(ClosedSegment {
            sequence: self.sequence,
            init_index: self.init_index,
            new_init: self.new_init.take(),
            discontinuity: std::mem::take(&mut self.discontinuity),
            start,
            duration: end - start,
            video: std::mem::take(&mut self.video),
            audio,
        });
        self.sequence += 1;
        self.end = end;
    }

    /// Closes the open segment with what has arrived (publisher gone).
    pub fn finish(&mut self, out: &mut Vec<ClosedSegment>) {
        if let Some(pending) = self.pending_video.take() {
            let duration = self.last_video_duration;
            let end = pending.time + u64::from(duration);
            self.accept_video(pending, duration);
            self.close(end, out);
        }
        self.audio.clear();
        self.pending_audio = None;
    }

    /// The next segment follows a timeline jump (a reconnecting publisher).
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(width: u16) -> Arc<AvcConfig> {
        Arc::new(AvcConfig {
            sps: vec![0x67, 0x42, 0xc0, 0x1e, width as u8],
            pps: vec![0x68],
            width,
            height: 360,
        })
    }

    #[test]
    fn cuts_at_the_first_keyframe_after_the_target_and_splits_audio_there() {
        let mut s = Segmenter::new(180_000);
        let mut out = Vec::new();
        let c = config(640);
        // 30 fps, keyframe every 45 frames (1.5 s): cuts land at 3 s (the first keyframe >= 2 s).
        for frame in 0..200u64 {
            let t = frame * 3000;
            s.push_video(
                t,
                frame % 45 == 0,
                Bytes::from_static(b"v"),
                c.clone(),
                &mut out,
            );
            s.push_audio(frame * 1600, 1600, Bytes::from_static(b"a"));
        }
        s.finish(&mut out);
        let starts: Vec<u64> = out.iter().map(|seg| seg.start).collect();
        assert_eq!(starts, vec![0, 270_000, 540_000]);
        assert_eq!(out[0].duration, 270_000);
        assert!(out.iter().all(|seg| seg.video[0].sync));
        assert!(out[0].new_init.is_some() && out[1].new_init.is_none());
        // Audio of the first segment ends exactly at the video cut (3 s = 144000 at 48 kHz).
        let last_audio = out[0].audio.last().unwrap();
        assert_eq!(
            last_audio.decode_time + u64::from(last_audio.duration),
            144_000
        );
        assert_eq!(out[1].audio[0].decode_time, 144_000);
        // Video durations are contiguous.
        assert!(out[0].video.iter().all(|v| v.duration == 3000));
    }

    #[test]
    fn a_keyframe_is_overdue_once_the_open_segment_reaches_the_target() {
        // 2 s target, 30 fps, one keyframe at the start and then only when asked (as a WebRTC
        // encoder does): overdue from the first delta frame at 2 s until a keyframe cuts.
        let mut s = Segmenter::new(180_000);
        let mut out = Vec::new();
        let c = config(640);
        let mut overdue = Vec::new();
        for frame in 0..70u64 {
            s.push_video(
                frame * 3000,
                frame == 0 || frame == 64,
                Bytes::from_static(b"v"),
                c.clone(),
                &mut out,
            );
            if s.keyframe_overdue() {
                overdue.push(frame);
            }
        }
        assert_eq!(overdue, (60..64).collect::<Vec<_>>());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].duration, 64 * 3000);
        // A publisher whose keyframes come at the target is never asked.
        let mut s = Segmenter::new(180_000);
        for frame in 0..200u64 {
            s.push_video(
                frame * 3000,
                frame % 60 == 0,
                Bytes::from_static(b"v"),
                c.clone(),
                &mut out,
            );
            assert!(!s.keyframe_overdue(), "frame {frame}");
        }
    }

    #[test]
    fn configuration_change_starts_new_init_with_discontinuity() {
        let mut s = Segmenter::new(900_000);
        let mut out = Vec::new();
        for frame in 0..10u64 {
            let c = if frame < 5 { config(640) } else { config(320) };
            s.push_video(
                frame * 3000,
                frame == 0 || frame == 5,
                Bytes::from_static(b"v"),
                c,
                &mut out,
            );
        }
        s.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].init_index, out[1].init_index), (0, 1));
        assert!(!out[0].discontinuity && out[1].discontinuity);
        assert_eq!(out[1].new_init.as_ref().unwrap().width, 320);
    }

    #[test]
    fn stream_must_start_with_a_keyframe() {
        let mut s = Segmenter::new(90_000);
        let mut out = Vec::new();
        s.push_video(0, false, Bytes::from_static(b"p"), config(640), &mut out);
        s.push_video(3000, true, Bytes::from_static(b"i"), config(640), &mut out);
        s.push_video(6000, false, Bytes::from_static(b"p"), config(640), &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start, 3000);
        assert_eq!(out[0].video.len(), 2);
    }
}
