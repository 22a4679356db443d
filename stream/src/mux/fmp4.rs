//! CMAF init segments (ftyp + moov with mvex) and media segments (styp + moof + mdat) with one
//! H264 video track and an optional Opus audio track, muxed in the same fragment.

use mp4_atom::{
    Audio, Avc1, Avcc, Dinf, Dops, Dref, Encode, FourCC, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf,
    Moof, Moov, Mvex, Mvhd, Opus, Smhd, Stbl, Stco, Stsd, Styp, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex,
    Trun, TrunEntry, Url, Visual, Vmhd,
};

use super::{
    MuxError, OpusConfig, Sample, AUDIO_TIMESCALE, AUDIO_TRACK_ID, SAMPLE_FLAGS_NON_SYNC,
    SAMPLE_FLAGS_SYNC, VIDEO_TIMESCALE, VIDEO_TRACK_ID,
};
use crate::ingest::h264::AvcConfig;

pub(crate) fn avc1_entry(config: &AvcConfig) -> Avc1 {
    Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width: config.width,
            height: config.height,
            horizresolution: 72.into(),
            vertresolution: 72.into(),
            frame_count: 1,
            compressor: "".into(),
            depth: 24,
        },
        avcc: Avcc {
            configuration_version: 1,
            avc_profile_indication: config.profile(),
            profile_compatibility: config.compatibility(),
            avc_level_indication: config.level(),
            length_size: 4,
            sequence_parameter_sets: vec![config.sps.clone()],
            picture_parameter_sets: vec![config.pps.clone()],
            ext: None,
        },
        ..Default::default()
    }
}

pub(crate) fn opus_entry(config: OpusConfig) -> Opus {
    Opus {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(config.channels),
            sample_size: 16,
            sample_rate: 48000.into(),
        },
        dops: Dops {
            output_channel_count: config.channels,
            // WebRTC Opus carries no encoder delay to skip.
            pre_skip: 0,
            input_sample_rate: 48000,
            output_gain: 0,
            channel_mapping: None,
        },
        btrt: None,
    }
}

pub(crate) fn video_trak(config: &AvcConfig, stbl: Stbl, duration: u64) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK_ID,
            enabled: true,
            in_movie: true,
            width: config.width.into(),
            height: config.height.into(),
            duration,
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: VIDEO_TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"vide"),
                name: "Video".into(),
            },
            minf: Minf {
                vmhd: Some(Vmhd::default()),
                dinf: dinf(),
                stbl,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

pub(crate) fn audio_trak(stbl: Stbl, duration: u64) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id: AUDIO_TRACK_ID,
            enabled: true,
            in_movie: true,
            alternate_group: 1,
            volume: 1.into(),
            duration,
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: AUDIO_TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"soun"),
                name: "Audio".into(),
            },
            minf: Minf {
                smhd: Some(Smhd::default()),
                dinf: dinf(),
                stbl,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![Url::default().into()],
        },
    }
}

/// `ftyp` + `moov` describing the tracks of every following media segment.
pub fn init_segment(video: &AvcConfig, audio: Option<OpusConfig>) -> Result<Vec<u8>, MuxError> {
    let empty_stbl = |entry: mp4_atom::Codec| Stbl {
        stsd: Stsd {
            codecs: vec![entry],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let mut trak = vec![video_trak(video, empty_stbl(avc1_entry(video).into()), 0)];
    let mut trex = vec![Trex {
        track_id: VIDEO_TRACK_ID,
        default_sample_description_index: 1,
        ..Default::default()
    }];
    if let Some(audio) = audio {
        trak.push(audio_trak(empty_stbl(opus_entry(audio).into()), 0));
        trex.push(Trex {
            track_id: AUDIO_TRACK_ID,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            next_track_id: AUDIO_TRACK_ID + 1,
            rate: 1.into(),
            volume: 1.into(),
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1024);
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: brands(),
    }
    .encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out)
}

fn brands() -> Vec<FourCC> {
    vec![
        FourCC::new(b"iso6"),
        FourCC::new(b"cmfc"),
        FourCC::new(b"mp41"),
        FourCC::new(b"dash"),
    ]
}

fn traf(track_id: u32, samples: &[Sample], data_offset: i32) -> Traf {
    let entries = samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.data.len() as u32),
            flags: Some(if s.sync {
                SAMPLE_FLAGS_SYNC
            } else {
                SAMPLE_FLAGS_NON_SYNC
            }),
            cts: None,
        })
        .collect::<Vec<_>>();
    Traf {
        tfhd: Tfhd {
            track_id,
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: samples.first().map_or(0, |s| s.decode_time),
        }),
        trun: vec![Trun {
            data_offset: Some(data_offset),
            samples: entries.into(),
        }],
        ..Default::default()
    }
}

/// `styp` + `moof` + `mdat`: the video samples, then the audio samples, in one fragment.
pub fn media_segment(
    sequence: u32,
    video: &[Sample],
    audio: &[Sample],
) -> Result<Vec<u8>, MuxError> {
    let build = |video_offset: i32, audio_offset: i32| {
        let mut traf_list = Vec::with_capacity(2);
        if !video.is_empty() {
            traf_list.push(traf(VIDEO_TRACK_ID, video, video_offset));
        }
        if !audio.is_empty() {
            traf_list.push(traf(AUDIO_TRACK_ID, audio, audio_offset));
        }
        Moof {
            mfhd: Mfhd {
                sequence_number: sequence,
            },
            traf: traf_list,
        }
    };
    // The data offsets count from the start of moof; its size does not depend on their values.
    let mut probe = Vec::new();
    build(0, 0).encode(&mut probe)?;
    let video_bytes: usize = video.iter().map(|s| s.data.len()).sum();
    let audio_bytes: usize = audio.iter().map(|s| s.data.len()).sum();
    let video_offset =
        i32::try_from(probe.len() + 8).map_err(|_| MuxError::Malformed("segment too large"))?;
    let audio_offset = i32::try_from(probe.len() + 8 + video_bytes)
        .map_err(|_| MuxError::Malformed("segment too large"))?;

    let mut out = Vec::with_capacity(probe.len() + 64 + video_bytes + audio_bytes);
    Styp {
        major_brand: FourCC::new(b"msdh"),
        minor_version: 0,
        compatible_brands: vec![FourCC::new(b"msdh"), FourCC::new(b"msix")],
    }
    .encode(&mut out)?;
    build(video_offset, audio_offset).encode(&mut out)?;
    let mut data = Vec::with_capacity(video_bytes + audio_bytes);
    for sample in video.iter().chain(audio) {
        data.extend_from_slice(&sample.data);
    }
    Mdat { data }.encode(&mut out)?;
    Ok(out)
}
