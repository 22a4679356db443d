//! Progressive MP4 clips: `ftyp` + `moov` (full sample tables) + `mdat`, copying samples as they
//! are. The clip starts at the keyframe at or before the requested time; an edit list per track
//! skips the pre-roll so players start presenting exactly at the requested time.

use mp4_atom::{
    Co64, Edts, Elst, ElstEntry, Encode, FourCC, Ftyp, Moov, Mvhd, Stbl, Stsc, StscEntry, Stsd,
    Stss, Stsz, StszSamples, Stts, SttsEntry,
};

use super::{
    fmp4::{audio_trak, avc1_entry, opus_entry, video_trak},
    MuxError, OpusConfig, Sample, AUDIO_TIMESCALE, VIDEO_TIMESCALE,
};
use crate::ingest::h264::AvcConfig;

const MOVIE_TIMESCALE: u32 = 1000;

/// What a clip holds: samples starting at or before `start` (in each track's timescale,
/// broadcast time), and how long to present from `start`.
pub struct ClipInput<'a> {
    pub video_config: &'a AvcConfig,
    pub video: &'a [Sample],
    pub audio_config: Option<OpusConfig>,
    pub audio: &'a [Sample],
    /// Requested presentation start, in seconds of broadcast time.
    pub start_seconds: f64,
    pub duration_seconds: f64,
}

fn stts(samples: &[Sample]) -> Stts {
    let mut entries: Vec<SttsEntry> = Vec::new();
    for sample in samples {
        match entries.last_mut() {
            Some(last) if last.sample_delta == sample.duration => last.sample_count += 1,
            _ => entries.push(SttsEntry {
                sample_count: 1,
                sample_delta: sample.duration,
            }),
        }
    }
    Stts { entries }
}

fn stbl(entry: mp4_atom::Codec, samples: &[Sample], chunk_offset: u64, with_stss: bool) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![entry],
        },
        stts: stts(samples),
        stss: with_stss.then(|| Stss {
            entries: samples
                .iter()
                .enumerate()
                .filter(|(_, s)| s.sync)
                .map(|(i, _)| i as u32 + 1)
                .collect(),
        }),
        stsc: Stsc {
            entries: vec![StscEntry {
                first_chunk: 1,
                samples_per_chunk: samples.len() as u32,
                sample_description_index: 1,
            }],
        },
        stsz: Stsz {
            samples: StszSamples::Different {
                sizes: samples.iter().map(|s| s.data.len() as u32).collect(),
            },
        },
        co64: Some(Co64 {
            entries: vec![chunk_offset],
        }),
        ..Default::default()
    }
}

fn edit(skip: u64, duration_seconds: f64) -> Edts {
    Edts {
        elst: Some(Elst {
            entries: vec![ElstEntry {
                segment_duration: (duration_seconds * f64::from(MOVIE_TIMESCALE)).round() as u64,
                media_time: Some(skip),
                media_rate: 1.into(),
            }],
        }),
    }
}

/// Media time (track timescale) from the first sample to `start_seconds`, never negative.
fn skip_to(samples: &[Sample], timescale: u32, start_seconds: f64) -> u64 {
    let start = (start_seconds * f64::from(timescale)).round() as u64;
    samples
        .first()
        .map_or(0, |first| start.saturating_sub(first.decode_time))
}

pub fn write_clip(input: &ClipInput<'_>) -> Result<Vec<u8>, MuxError> {
    if input.video.is_empty() || !input.video[0].sync {
        return Err(MuxError::Malformed("a clip must start with a keyframe"));
    }
    let video_bytes: u64 = input.video.iter().map(|s| s.data.len() as u64).sum();
    let audio_bytes: u64 = input.audio.iter().map(|s| s.data.len() as u64).sum();
    let movie_duration = (input.duration_seconds * f64::from(MOVIE_TIMESCALE)).round() as u64;
    let build = |video_offset: u64, audio_offset: u64| {
        let video_skip = skip_to(input.video, VIDEO_TIMESCALE, input.start_seconds);
        let mut video = video_trak(
            input.video_config,
            stbl(
                avc1_entry(input.video_config).into(),
                input.video,
                video_offset,
                true,
            ),
            movie_duration,
        );
        video.mdia.mdhd.duration = input.video.iter().map(|s| u64::from(s.duration)).sum();
        video.edts = Some(edit(video_skip, input.duration_seconds));
        let mut trak = vec![video];
        if let (Some(config), false) = (input.audio_config, input.audio.is_empty()) {
            let audio_skip = skip_to(input.audio, AUDIO_TIMESCALE, input.start_seconds);
            let mut audio = audio_trak(
                stbl(opus_entry(config).into(), input.audio, audio_offset, false),
                movie_duration,
            );
            audio.mdia.mdhd.duration = input.audio.iter().map(|s| u64::from(s.duration)).sum();
            audio.edts = Some(edit(audio_skip, input.duration_seconds));
            trak.push(audio);
        }
        Moov {
            mvhd: Mvhd {
                timescale: MOVIE_TIMESCALE,
                duration: movie_duration,
                next_track_id: 3,
                rate: 1.into(),
                volume: 1.into(),
                ..Default::default()
            },
            trak,
            ..Default::default()
        }
    };
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"isom"),
        minor_version: 512,
        compatible_brands: vec![
            FourCC::new(b"isom"),
            FourCC::new(b"iso2"),
            FourCC::new(b"avc1"),
            FourCC::new(b"mp41"),
        ],
    };
    let mut head = Vec::new();
    ftyp.encode(&mut head)?;
    let ftyp_len = head.len() as u64;
    // Offsets are co64 entries: the moov size does not depend on their values.
    let mut probe = Vec::new();
    build(0, 0).encode(&mut probe)?;
    // mdat with a 64-bit size header (16 bytes) so clips over 4 GiB stay valid.
    let mdat_start = ftyp_len + probe.len() as u64 + 16;
    build(mdat_start, mdat_start + video_bytes).encode(&mut head)?;

    let mut out = Vec::with_capacity(head.len() + 16 + (video_bytes + audio_bytes) as usize);
    out.extend_from_slice(&head);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(&(16 + video_bytes + audio_bytes).to_be_bytes());
    for sample in input.video.iter().chain(input.audio) {
        out.extend_from_slice(&sample.data);
    }
    Ok(out)
}
