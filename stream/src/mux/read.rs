//! Reads the samples back out of media segments this crate wrote (for clips). Only the layout
//! [`super::fmp4::media_segment`] produces is accepted: one moof with default-base-is-moof trafs.

use bytes::Bytes;
use mp4_atom::{Decode, DecodeAtom, FourCC, Header, Moof};

use super::{MuxError, Sample, AUDIO_TRACK_ID, SAMPLE_FLAGS_NON_SYNC, VIDEO_TRACK_ID};

#[derive(Debug, Default, Clone)]
pub struct SegmentSamples {
    pub video: Vec<Sample>,
    pub audio: Vec<Sample>,
}

pub fn read_segment(segment: &Bytes) -> Result<SegmentSamples, MuxError> {
    let mut out = SegmentSamples::default();
    let mut position = 0usize;
    while position < segment.len() {
        let mut cursor = &segment[position..];
        let before = cursor.len();
        let header = Header::decode(&mut cursor)?;
        let header_len = before - cursor.len();
        let body_len = header.size.ok_or(MuxError::Malformed("box without size"))?;
        let end = position + header_len + body_len;
        if end > segment.len() {
            return Err(MuxError::Malformed("truncated box"));
        }
        if header.kind == FourCC::new(b"moof") {
            let mut body = &segment[position + header_len..end];
            let moof = Moof::decode_atom(&header, &mut body)?;
            for traf in &moof.traf {
                let mut time = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
                let target = match traf.tfhd.track_id {
                    VIDEO_TRACK_ID => &mut out.video,
                    AUDIO_TRACK_ID => &mut out.audio,
                    _ => continue,
                };
                for trun in &traf.trun {
                    let offset = trun
                        .data_offset
                        .ok_or(MuxError::Malformed("trun without data offset"))?;
                    let mut data_at = position
                        + usize::try_from(offset)
                            .map_err(|_| MuxError::Malformed("negative data offset"))?;
                    for entry in &trun.samples {
                        let size = entry
                            .size
                            .ok_or(MuxError::Malformed("sample without size"))?
                            as usize;
                        let duration = entry
                            .duration
                            .ok_or(MuxError::Malformed("sample without duration"))?;
                        let flags = entry.flags.unwrap_or(SAMPLE_FLAGS_NON_SYNC);
                        if data_at + size > segment.len() {
                            return Err(MuxError::Malformed("sample beyond the end"));
                        }
                        target.push(Sample {
                            decode_time: time,
                            duration,
                            sync: flags & 0x0001_0000 == 0,
                            data: segment.slice(data_at..data_at + size),
                        });
                        data_at += size;
                        time += u64::from(duration);
                    }
                }
            }
        }
        position = end;
    }
    Ok(out)
}
