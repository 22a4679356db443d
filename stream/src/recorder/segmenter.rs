//! Cuts the broadcast timeline into media segments (sans-IO).
//!
//! Video access units and audio frames come in on the broadcast timeline (90 kHz / 48 kHz from
//! the broadcast start). A segment closes at the first keyframe after the target duration, or
//! at a keyframe whose decoder configuration changed (that one starts a new init and a
//! discontinuity). Sample durations are the distance to the next sample, so one sample of each
//! track is held back until its successor arrives.
//!
//! No segment is longer than `max` (see `hls::max_segment_ticks`): the playlists announce one
//! EXT-X-TARGETDURATION for the whole broadcast before the publisher's keyframe interval is known,
//! and the RFC forbids changing it. So when the next keyframe will not come in time, the segment
//! is cut earlier: at a keyframe before the target when the publisher's keyframe interval says the
//! following one would be too late, else inside the GOP (the next segment then starts with a
//! delta frame, is marked not independent, and closes at the next keyframe to realign). A pause in
//! the video longer than the limit (a stall, loss waiting for a keyframe) ends the segment at the
//! limit and leaves a gap before the next one.

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
    /// Starts with a keyframe; false after a cut inside a GOP.
    pub independent: bool,
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
    /// Longest segment allowed, inclusive (90 kHz).
    max: u64,
    /// The latest keyframe and the interval before it: when the next one is expected.
    last_keyframe: Option<u64>,
    keyframe_interval: Option<u64>,
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
    /// `target` is the segment duration aimed at and `max` the longest one allowed (inclusive),
    /// both in 90 kHz ticks.
    pub fn new(target: u64, max: u64) -> Self {
        Self {
            target,
            max: max.max(1),
            last_keyframe: None,
            keyframe_interval: None,
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
        let new = PendingVideo {
            time,
            keyframe,
            data,
            config,
        };
        let Some(pending) = self.pending_video.take() else {
            if self.segment_start.is_none() && !keyframe {
                return; // a segment must start with a keyframe
            }
            self.note_keyframe(&new);
            self.pending_video = Some(new);
            return;
        };
        if time <= pending.time {
            self.pending_video = Some(pending);
            return;
        }
        self.note_keyframe(&new);
        let start = self.segment_start.unwrap_or(pending.time);
        let latest_end = start + self.max;
        if time > latest_end {
            // Ending the segment at this access unit would make it too long: the pending one lasts
            // to the limit and this one opens the next segment after a gap.
            let duration = u32::try_from(latest_end.saturating_sub(pending.time))
                .unwrap_or(u32::MAX)
                .max(1);
            let end = pending.time + u64::from(duration);
            self.accept_video(pending, duration);
            self.close(end, out);
        } else {
            let duration = u32::try_from(time - pending.time).unwrap_or(u32::MAX);
            self.last_video_duration = duration;
            self.accept_video(pending, duration);
            if self.cut_before(&new, start) {
                self.close(time, out);
            }
        }
        self.pending_video = Some(new);
    }

    fn note_keyframe(&mut self, access_unit: &PendingVideo) {
        if access_unit.keyframe {
            if let Some(last) = self.last_keyframe {
                self.keyframe_interval = Some(access_unit.time.saturating_sub(last));
            }
            self.last_keyframe = Some(access_unit.time);
        }
    }

    /// Whether the open segment, started at `start`, ends before access unit `next` (which it
    /// could still take without passing `max`).
    fn cut_before(&self, next: &PendingVideo, start: u64) -> bool {
        let elapsed = next.time - start;
        // Keeping `next` makes the segment last at least one more frame.
        let next_frame_too_late = elapsed + u64::from(self.last_video_duration) > self.max;
        if next.keyframe {
            let config_changed = self
                .config
                .as_ref()
                .is_some_and(|c| c.as_ref() != next.config.as_ref());
            // After a cut inside a GOP, the first keyframe realigns segments with GOPs.
            let independent = self.video.first().is_some_and(|v| v.sync);
            let following_keyframe_too_late = self
                .keyframe_interval
                .is_some_and(|interval| elapsed + interval > self.max);
            elapsed >= self.target
                || config_changed
                || !independent
                || following_keyframe_too_late
                || next_frame_too_late
        } else {
            // The next segment would need this one's frames, so only when no keyframe can come in
            // time: the publisher's keyframe interval puts the next one past the limit (a
            // publisher answering keyframe requests has a shorter interval), or the limit is one
            // frame away.
            let next_keyframe_too_late = elapsed >= self.target
                && self
                    .last_keyframe
                    .zip(self.keyframe_interval)
                    .is_some_and(|(last, interval)| last + interval > start + self.max);
            next_keyframe_too_late || next_frame_too_late
        }
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
            independent: self.video.first().is_some_and(|v| v.sync),
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
            let start = self.segment_start.unwrap_or(pending.time);
            let room =
                u32::try_from((start + self.max).saturating_sub(pending.time)).unwrap_or(u32::MAX);
            let duration = self.last_video_duration.min(room).max(1);
            let end = pending.time + u64::from(duration);
            self.accept_video(pending, duration);
            self.close(end, out);
        }
        self.audio.clear();
        self.pending_audio = None;
        // A returning publisher may use another keyframe interval.
        self.last_keyframe = None;
        self.keyframe_interval = None;
    }

    /// The next segment follows a timeline jump (a reconnecting publisher).
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit of a 2 s target (EXT-X-TARGETDURATION 2): just under 2.5 s.
    fn max_2s() -> u64 {
        crate::hls::max_segment_ticks(2)
    }

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
        let mut s = Segmenter::new(180_000, max_2s());
        let mut out = Vec::new();
        let c = config(640);
        // 30 fps, keyframe every 36 frames (1.2 s): cuts land at 2.4 s (the first keyframe >= 2 s).
        for frame in 0..200u64 {
            let t = frame * 3000;
            s.push_video(
                t,
                frame % 36 == 0,
                Bytes::from_static(b"v"),
                c.clone(),
                &mut out,
            );
            s.push_audio(frame * 1600, 1600, Bytes::from_static(b"a"));
        }
        s.finish(&mut out);
        let starts: Vec<u64> = out.iter().map(|seg| seg.start).collect();
        assert_eq!(starts, vec![0, 216_000, 432_000]);
        assert_eq!(out[0].duration, 216_000);
        assert!(out.iter().all(|seg| seg.video[0].sync && seg.independent));
        assert!(out[0].new_init.is_some() && out[1].new_init.is_none());
        // Audio of the first segment ends exactly at the video cut (2.4 s = 115200 at 48 kHz).
        let last_audio = out[0].audio.last().unwrap();
        assert_eq!(
            last_audio.decode_time + u64::from(last_audio.duration),
            115_200
        );
        assert_eq!(out[1].audio[0].decode_time, 115_200);
        // Video durations are contiguous.
        assert!(out[0].video.iter().all(|v| v.duration == 3000));
    }

    #[test]
    fn a_keyframe_is_overdue_once_the_open_segment_reaches_the_target() {
        // 2 s target, 30 fps, one keyframe at the start and then only when asked (as a WebRTC
        // encoder does): overdue from the first delta frame at 2 s until a keyframe cuts.
        let mut s = Segmenter::new(180_000, max_2s());
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
        let mut s = Segmenter::new(180_000, max_2s());
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
        let mut s = Segmenter::new(900_000, crate::hls::max_segment_ticks(10));
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
        let mut s = Segmenter::new(90_000, crate::hls::max_segment_ticks(1));
        let mut out = Vec::new();
        s.push_video(0, false, Bytes::from_static(b"p"), config(640), &mut out);
        s.push_video(3000, true, Bytes::from_static(b"i"), config(640), &mut out);
        s.push_video(6000, false, Bytes::from_static(b"p"), config(640), &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start, 3000);
        assert_eq!(out[0].video.len(), 2);
    }

    /// Pushes 30 fps video with keyframes where `keyframe(frame)` says, and audio, then finishes.
    fn run(frames: u64, keyframe: impl Fn(u64) -> bool) -> Vec<ClosedSegment> {
        let mut s = Segmenter::new(180_000, max_2s());
        let mut out = Vec::new();
        let c = config(640);
        for frame in 0..frames {
            s.push_video(
                frame * 3000,
                keyframe(frame),
                Bytes::from_static(b"v"),
                c.clone(),
                &mut out,
            );
            s.push_audio(frame * 1600, 1600, Bytes::from_static(b"a"));
        }
        s.finish(&mut out);
        out
    }

    /// Every segment fits the limit, follows its predecessor without a gap, and is independent
    /// exactly when it starts with a keyframe.
    fn assert_well_formed(out: &[ClosedSegment], total: u64) {
        let mut end = 0;
        for seg in out {
            assert!(seg.duration <= max_2s(), "{} > limit", seg.duration);
            assert_eq!(seg.start, end, "contiguous");
            assert_eq!(seg.independent, seg.video[0].sync);
            let video_end = seg
                .video
                .last()
                .map(|v| v.decode_time + u64::from(v.duration));
            assert_eq!(video_end, Some(seg.start + seg.duration));
            end = seg.start + seg.duration;
        }
        assert_eq!(end, total);
    }

    #[test]
    fn a_keyframe_interval_past_the_limit_cuts_at_the_keyframe_before_the_target() {
        // Keyframes every 1.5 s: waiting for the one at 3 s would outgrow EXT-X-TARGETDURATION 2
        // (3 s rounds to 3), so each segment ends at the keyframe 1.5 s in and stays independent.
        let out = run(180, |frame| frame % 45 == 0);
        assert_well_formed(&out, 540_000);
        assert!(out
            .iter()
            .all(|seg| seg.duration == 135_000 && seg.independent));
    }

    #[test]
    fn keyframes_rarer_than_the_limit_are_cut_inside_the_gop() {
        // Keyframes every 8 s (an encoder's default GOP that ignores keyframe requests).
        let out = run(720, |frame| frame % 240 == 0);
        assert_well_formed(&out, 2_160_000);
        let starts: Vec<u64> = out.iter().map(|seg| seg.start).collect();
        // The first GOP's interval is unknown: cut one frame before the limit (2.4667 s), the
        // keyframe at 8 s realigns; from then on the interval is known and each GOP is cut into
        // four 2 s segments, the first of them independent.
        assert_eq!(&starts[..5], &[0, 222_000, 444_000, 666_000, 720_000]);
        assert_eq!(
            &starts[4..],
            &[720_000, 900_000, 1_080_000, 1_260_000, 1_440_000, 1_620_000, 1_800_000, 1_980_000]
        );
        let independent: Vec<bool> = out.iter().map(|seg| seg.independent).collect();
        assert_eq!(
            independent,
            [true, false, false, false, true, false, false, false, true, false, false, false]
        );
        // Audio follows the cuts.
        for seg in &out {
            let first = seg.audio.first().unwrap().decode_time;
            assert_eq!(first, seg.start * 48 / 90);
        }
    }

    #[test]
    fn a_stalled_publisher_ends_the_segment_at_the_limit() {
        let mut s = Segmenter::new(180_000, max_2s());
        let mut out = Vec::new();
        let c = config(640);
        let v = Bytes::from_static(b"v");
        for frame in 0..30u64 {
            s.push_video(frame * 3000, frame == 0, v.clone(), c.clone(), &mut out);
        }
        // 5 s without video, then delta frames again.
        for frame in 0..10u64 {
            s.push_video(
                600_000 + frame * 3000,
                false,
                v.clone(),
                c.clone(),
                &mut out,
            );
        }
        s.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].duration, max_2s());
        assert_eq!(out[0].video.len(), 30);
        assert_eq!((out[1].start, out[1].duration), (600_000, 30_000));
        assert!(!out[1].independent);
    }

    #[test]
    fn no_segment_outgrows_the_limit_whatever_the_timing() {
        // Jittered frame intervals (10-90 ms), keyframes at random, the odd long pause.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..50 {
            let mut s = Segmenter::new(180_000, max_2s());
            let mut out = Vec::new();
            let c = config(640);
            let mut time = 0;
            let keyframe_odds = 2 + next(300);
            for frame in 0..2000 {
                let keyframe = frame == 0 || next(keyframe_odds) == 0;
                s.push_video(
                    time,
                    keyframe,
                    Bytes::from_static(b"v"),
                    c.clone(),
                    &mut out,
                );
                time += 900 + next(7200) + if next(200) == 0 { next(400_000) } else { 0 };
            }
            s.finish(&mut out);
            assert!(out.len() > 10, "round {round}");
            for seg in &out {
                assert!(seg.duration <= max_2s(), "round {round}: {}", seg.duration);
                assert_eq!(seg.independent, seg.video[0].sync);
            }
        }
    }
}
