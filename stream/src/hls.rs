//! HLS playlists (m3u8-rs) rendered from segment rows: the multivariant playlist with CODECS,
//! media playlists (live window, VOD with ENDLIST, clip with EXT-X-START PRECISE).
//!
//! EXT-X-TARGETDURATION is fixed per video when its broadcast starts ([`target_duration_for`]) and
//! the recorder cuts every segment short enough to fit it ([`max_segment_ticks`]): RFC 8216
//! §6.2.1 forbids changing the value between reloads of a live playlist, and §4.3.3.1 wants every
//! EXTINF, rounded to the nearest integer, at most that value. Deriving it from the listed window
//! (as before) changed it whenever a longer or shorter segment entered or left the window.

use std::collections::HashMap;

use m3u8_rs::{
    Map, MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, Start,
    VariantStream,
};

use crate::store::SegmentRow;

pub struct Variant<'a> {
    pub uri: &'a str,
    pub codecs: &'a str,
    pub width: u64,
    pub height: u64,
    pub bandwidth: u64,
}

pub fn multivariant(variant: &Variant<'_>) -> String {
    let playlist = MasterPlaylist {
        version: Some(7),
        independent_segments: true,
        variants: vec![VariantStream {
            uri: variant.uri.to_string(),
            bandwidth: variant.bandwidth.max(1),
            codecs: Some(variant.codecs.to_string()),
            resolution: (variant.width > 0).then_some(Resolution {
                width: variant.width,
                height: variant.height,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    render(|w| playlist.write_to(w))
}

pub enum Kind {
    /// A live sliding window (no ENDLIST).
    Live,
    /// The whole finished recording.
    Vod,
    /// A clip: whole segments, playback starts `offset` seconds into the first one.
    Clip { offset: f64 },
}

pub struct MediaInput<'a> {
    /// The segments to list, in order.
    pub segments: &'a [SegmentRow],
    /// EXT-X-TARGETDURATION, from [`playlist_target_duration`] (never from the listed window).
    pub target_duration: u64,
    /// Discontinuities before the first listed segment (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuities_before: u64,
    /// Wall-clock time of broadcast time 0, unix ms.
    pub started_ms: i64,
    pub kind: Kind,
}

/// The EXT-X-TARGETDURATION of a broadcast whose recorder aims at `segment_ms` segments: the
/// target rounded up to whole seconds (at least 1).
pub fn target_duration_for(segment_ms: u64) -> u64 {
    segment_ms.div_ceil(1000).max(1)
}

/// The longest segment, in 90 kHz ticks, whose EXTINF still rounds to at most `target_duration`
/// seconds. The bound is set when a broadcast starts, while the publisher's keyframe interval is
/// unknown, so the recorder enforces it: it cuts at a keyframe when one comes in time and inside
/// the GOP when not (see `recorder::segmenter`). 1 ms below the half second keeps the f32 EXTINF
/// m3u8-rs prints clear of rounding up.
pub fn max_segment_ticks(target_duration: u64) -> u64 {
    target_duration * 90_000 + 45_000 - 90
}

/// EXT-X-TARGETDURATION of a video's playlists (live, VOD and clips): the value fixed when its
/// broadcast started, or, if any of its segments is longer (videos recorded before the value was
/// stored have 0), the longest rounded segment of the whole recording — never of a window, so a
/// window sliding past a long segment cannot lower it.
pub fn playlist_target_duration(stored: i64, all_segments: &[SegmentRow]) -> u64 {
    let longest = all_segments
        .iter()
        .map(|s| s.duration_seconds().round() as u64)
        .max()
        .unwrap_or(0);
    u64::try_from(stored).unwrap_or(0).max(longest).max(1)
}

pub fn segment_uri(seq: i64) -> String {
    format!("../segments/{seq}.m4s")
}

pub fn init_uri(idx: i64) -> String {
    format!("../segments/init-{idx}.mp4")
}

pub fn media_playlist(input: &MediaInput<'_>) -> String {
    let mut segments = Vec::with_capacity(input.segments.len());
    let mut current_init = None;
    for (i, row) in input.segments.iter().enumerate() {
        let pdt_ms = input.started_ms + row.start_ticks / 90;
        let map = (current_init != Some(row.init_idx)).then(|| Map {
            uri: init_uri(row.init_idx),
            byte_range: None,
            other_attributes: HashMap::new(),
        });
        current_init = Some(row.init_idx);
        segments.push(MediaSegment {
            uri: segment_uri(row.seq),
            duration: row.duration_seconds() as f32,
            discontinuity: i > 0 && row.discontinuity,
            map,
            program_date_time: chrono::DateTime::from_timestamp_millis(pdt_ms)
                .map(|t| t.fixed_offset()),
            ..Default::default()
        });
    }
    let playlist = MediaPlaylist {
        version: Some(7),
        target_duration: input.target_duration,
        media_sequence: input.segments.first().map_or(0, |s| s.seq as u64),
        discontinuity_sequence: input.discontinuities_before,
        segments,
        end_list: !matches!(input.kind, Kind::Live),
        playlist_type: match input.kind {
            Kind::Live => None,
            Kind::Vod | Kind::Clip { .. } => Some(MediaPlaylistType::Vod),
        },
        // A segment the recorder had to cut inside a GOP needs its predecessor's frames.
        independent_segments: input.segments.iter().all(|s| s.independent),
        start: match input.kind {
            Kind::Clip { offset } => Some(Start {
                time_offset: offset,
                precise: Some(true),
                other_attributes: HashMap::new(),
            }),
            _ => None,
        },
        ..Default::default()
    };
    render(|w| playlist.write_to(w))
}

fn render(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: i64, init: i64, start: i64, disc: bool) -> SegmentRow {
        SegmentRow {
            seq,
            init_idx: init,
            start_ticks: start,
            duration_ticks: 180_000,
            size_bytes: 1,
            discontinuity: disc,
            independent: true,
        }
    }

    /// Back-to-back segments of the given lengths (90 kHz ticks) from sequence 0.
    fn recording(durations: &[i64]) -> Vec<SegmentRow> {
        let mut start = 0;
        durations
            .iter()
            .enumerate()
            .map(|(i, &duration)| {
                let row = SegmentRow {
                    seq: i as i64,
                    init_idx: 0,
                    start_ticks: start,
                    duration_ticks: duration,
                    size_bytes: 1,
                    discontinuity: false,
                    independent: true,
                };
                start += duration;
                row
            })
            .collect()
    }

    fn render(segments: &[SegmentRow], target_duration: u64, kind: Kind) -> MediaPlaylist {
        let text = media_playlist(&MediaInput {
            segments,
            target_duration,
            discontinuities_before: 0,
            started_ms: 0,
            kind,
        });
        m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("valid playlist")
    }

    /// RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest integer, is at most the target.
    fn assert_extinf_within_target(playlist: &MediaPlaylist) {
        for segment in &playlist.segments {
            assert!(
                (segment.duration.round() as u64) <= playlist.target_duration,
                "EXTINF {} > EXT-X-TARGETDURATION {}",
                segment.duration,
                playlist.target_duration
            );
        }
    }

    #[test]
    fn target_duration_is_the_segment_target_rounded_up() {
        assert_eq!(target_duration_for(2000), 2);
        assert_eq!(target_duration_for(2001), 3);
        assert_eq!(target_duration_for(1500), 2);
        assert_eq!(target_duration_for(6000), 6);
        assert_eq!(target_duration_for(0), 1);
        for target_duration in 1..=12u64 {
            let max = max_segment_ticks(target_duration);
            // As m3u8-rs writes EXTINF (f32) and a player rounds it.
            let extinf = (max as f64 / 90_000.0) as f32;
            assert_eq!(extinf.round() as u64, target_duration);
            let over = ((max + 90) as f64 / 90_000.0) as f32;
            assert_eq!(over.round() as u64, target_duration + 1);
        }
    }

    #[test]
    fn live_target_duration_stays_the_same_as_the_window_slides() {
        // Segments as the recorder cuts them for a 2 s target: 2 s, a GOP cut short before the
        // limit, short realigning ones, one at the limit. The window-derived value used to swing
        // between 1 and 2 here.
        let all = recording(&[
            180_000, 222_000, 222_000, 54_000, 180_000, 30_000, 224_910, 40_000, 45_000, 30_000,
            40_000, 50_000, 60_000, 180_000,
        ]);
        let target_duration = playlist_target_duration(2, &all);
        assert_eq!(target_duration, 2);
        let mut seen = Vec::new();
        for end in 1..=all.len() {
            // Each reload lists the last (up to) 6 segments recorded so far.
            let so_far = &all[..end];
            let window = &so_far[so_far.len().saturating_sub(6)..];
            let playlist = render(window, playlist_target_duration(2, so_far), Kind::Live);
            assert_extinf_within_target(&playlist);
            seen.push(playlist.target_duration);
        }
        assert!(seen.iter().all(|&t| t == 2), "{seen:?}");
        let window_derived = |window: &[SegmentRow]| {
            window
                .iter()
                .map(|s| s.duration_seconds().round() as u64)
                .max()
        };
        assert_eq!(
            window_derived(&all[7..13]),
            Some(1),
            "what the old code announced"
        );
        // The finished recording (VOD) and a clip keep the same value.
        let vod = render(&all, playlist_target_duration(2, &all), Kind::Vod);
        assert_eq!(vod.target_duration, 2);
        assert_extinf_within_target(&vod);
        let clip = render(&all[3..6], target_duration, Kind::Clip { offset: 0.5 });
        assert_eq!(clip.target_duration, 2);
        assert_extinf_within_target(&clip);
    }

    #[test]
    fn videos_recorded_without_a_stored_target_use_their_longest_segment() {
        // Stored 0 (before the column existed); one 3.2 s segment among 2 s ones.
        let all = recording(&[180_000, 288_000, 180_000, 100_000]);
        assert_eq!(playlist_target_duration(0, &all), 3);
        // A window without the long segment keeps the recording's value.
        let playlist = render(&all[2..], playlist_target_duration(0, &all), Kind::Vod);
        assert_eq!(playlist.target_duration, 3);
        // A stored value below a segment (never written by the recorder) still yields a valid
        // playlist.
        let playlist = render(&all, playlist_target_duration(2, &all), Kind::Vod);
        assert_eq!(playlist.target_duration, 3);
        assert_extinf_within_target(&playlist);
        assert_eq!(playlist_target_duration(0, &[]), 1);
    }

    #[test]
    fn a_segment_cut_inside_a_gop_drops_independent_segments() {
        let mut all = recording(&[180_000, 180_000, 180_000]);
        let text = |rows: &[SegmentRow]| {
            media_playlist(&MediaInput {
                segments: rows,
                target_duration: 2,
                discontinuities_before: 0,
                started_ms: 0,
                kind: Kind::Live,
            })
        };
        assert!(text(&all).contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        all[1].independent = false;
        assert!(!text(&all).contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        assert!(text(&all[2..]).contains("#EXT-X-INDEPENDENT-SEGMENTS"));
    }

    #[test]
    fn media_playlist_has_map_pdt_and_discontinuity() {
        let rows = [seg(3, 0, 540_000, false), seg(4, 1, 720_000, true)];
        let text = media_playlist(&MediaInput {
            segments: &rows,
            target_duration: 2,
            discontinuities_before: 0,
            started_ms: 1_700_000_000_000,
            kind: Kind::Live,
        });
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("valid playlist");
        assert_eq!(parsed.media_sequence, 3);
        assert!(!parsed.end_list);
        assert_eq!(
            parsed.segments[0].map.as_ref().unwrap().uri,
            "../segments/init-0.mp4"
        );
        assert_eq!(
            parsed.segments[1].map.as_ref().unwrap().uri,
            "../segments/init-1.mp4"
        );
        assert!(parsed.segments[1].discontinuity);
        assert_eq!(
            parsed.segments[0]
                .program_date_time
                .unwrap()
                .timestamp_millis(),
            1_700_000_006_000
        );
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME"));
    }

    #[test]
    fn clip_playlist_is_vod_with_precise_start() {
        let rows = [seg(0, 0, 0, false)];
        let text = media_playlist(&MediaInput {
            segments: &rows,
            target_duration: 2,
            discontinuities_before: 0,
            started_ms: 0,
            kind: Kind::Clip { offset: 1.5 },
        });
        assert!(text.contains("#EXT-X-ENDLIST"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
        assert!(text.contains("PRECISE=YES"), "{text}");
        let master = multivariant(&Variant {
            uri: "stream.m3u8",
            codecs: "avc1.42e01f,opus",
            width: 640,
            height: 360,
            bandwidth: 800_000,
        });
        assert!(master.contains("CODECS=\"avc1.42e01f,opus\""), "{master}");
        assert!(master.contains("RESOLUTION=640x360"));
    }
}
