//! HLS playlists (m3u8-rs) rendered from segment rows: the multivariant playlist with CODECS,
//! media playlists (live window, VOD with ENDLIST, clip with EXT-X-START PRECISE).

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
    /// Discontinuities before the first listed segment (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuities_before: u64,
    /// Wall-clock time of broadcast time 0, unix ms.
    pub started_ms: i64,
    pub kind: Kind,
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
    let target = input
        .segments
        .iter()
        .map(|s| s.duration_seconds().round() as u64)
        .max()
        .unwrap_or(2)
        .max(1);
    let playlist = MediaPlaylist {
        version: Some(7),
        target_duration: target,
        media_sequence: input.segments.first().map_or(0, |s| s.seq as u64),
        discontinuity_sequence: input.discontinuities_before,
        segments,
        end_list: !matches!(input.kind, Kind::Live),
        playlist_type: match input.kind {
            Kind::Live => None,
            Kind::Vod | Kind::Clip { .. } => Some(MediaPlaylistType::Vod),
        },
        independent_segments: true,
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
        }
    }

    #[test]
    fn media_playlist_has_map_pdt_and_discontinuity() {
        let rows = [seg(3, 0, 540_000, false), seg(4, 1, 720_000, true)];
        let text = media_playlist(&MediaInput {
            segments: &rows,
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
