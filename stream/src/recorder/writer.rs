//! Stores closed segments: mux, put the object, then insert the row — so a listed segment is
//! always complete (a crash between the two leaves an unlisted object, never a listed gap).

use bytes::Bytes;
use platform::{Metric, Platform};

use super::segmenter::ClosedSegment;
use crate::{
    keys,
    mux::{fmp4, OpusConfig},
    store::{self, InitRow, SegmentRow},
    StreamError,
};

#[derive(Clone)]
pub struct SegmentWriter {
    pub platform: Platform,
    pub account_id: String,
    pub video_id: String,
    pub recorded: bool,
    pub audio: Option<OpusConfig>,
}

impl SegmentWriter {
    pub fn codecs(&self, video_codec: &str) -> String {
        match self.audio {
            Some(_) => format!("{video_codec},opus"),
            None => video_codec.to_string(),
        }
    }

    pub async fn write(&self, segment: ClosedSegment) -> Result<(), StreamError> {
        let init_idx = i64::from(segment.init_index);
        if let Some(config) = &segment.new_init {
            let init = fmp4::init_segment(config, self.audio)?;
            let key = keys::init_key(&self.account_id, &self.video_id, init_idx)?;
            self.platform.storage.put(&key, Bytes::from(init)).await?;
            let row = InitRow {
                idx: init_idx,
                codecs: self.codecs(&config.codec_string()),
                width: i64::from(config.width),
                height: i64::from(config.height),
            };
            store::insert_init(&self.platform.db, &self.video_id, &row).await?;
        }
        let audio: &[crate::mux::Sample] = if self.audio.is_some() {
            &segment.audio
        } else {
            &[]
        };
        let data = fmp4::media_segment(segment.sequence + 1, &segment.video, audio)?;
        let seq = i64::from(segment.sequence);
        let key = keys::segment_key(&self.account_id, &self.video_id, seq)?;
        let size = data.len() as i64;
        self.platform.storage.put(&key, Bytes::from(data)).await?;
        let row = SegmentRow {
            seq,
            init_idx,
            start_ticks: i64::try_from(segment.start).unwrap_or(i64::MAX),
            duration_ticks: i64::try_from(segment.duration).unwrap_or(i64::MAX),
            size_bytes: size,
            discontinuity: segment.discontinuity,
            independent: segment.independent,
        };
        store::insert_segment(&self.platform.db, &self.video_id, &row).await?;
        if self.recorded {
            self.platform.meter.record(
                &self.account_id,
                Metric::StreamMinutesStored,
                row.duration_seconds() / 60.0,
            );
        }
        tracing::debug!(video_id = %self.video_id, seq, duration = row.duration_seconds(), "segment stored");
        Ok(())
    }
}
