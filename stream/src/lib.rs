//! Stream: live inputs with WHIP ingest and WHEP playback, rolling HLS, recordings and instant
//! clipping without re-encoding.
//!
//! Layout (request path → folder): `api/` (HTTP: live inputs, videos, playback, clips),
//! `ingest/` (RTP → access units, sans-IO), `recorder/` (segmenter pipeline + storage writer),
//! `mux/` (fMP4 segments, MP4 clips), `hls` (playlists), `live` (broadcast tasks), `store` (rows), `origins`
//! (allowedOrigins).

pub mod api;
pub mod hls;
pub mod ingest;
pub mod keys;
pub mod live;
pub mod mux;
pub mod origins;
pub mod recorder;
pub mod store;
pub mod timespec;

use std::{sync::Arc, time::Duration};

use axum::{extract::FromRef, Router};
use platform::Platform;

pub use live::{KeyframeRequester, Publisher};
pub use recorder::pipeline::TrackKind;

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Stream")]
pub struct StreamConfig {
    /// Target HLS segment duration in milliseconds; segments are cut at the first keyframe after it.
    #[arg(
        long = "stream-segment-ms",
        env = "MEDIAPLANE_STREAM_SEGMENT_MS",
        default_value_t = 2000
    )]
    pub segment_ms: u64,
    /// Number of segments in the live HLS playlist window.
    #[arg(
        long = "stream-live-window",
        env = "MEDIAPLANE_STREAM_LIVE_WINDOW",
        default_value_t = 6
    )]
    pub live_window: usize,
    /// How often expired recordings (deleteRecordingAfterDays) are swept, in seconds.
    #[arg(
        long = "stream-retention-sweep-secs",
        env = "MEDIAPLANE_STREAM_RETENTION_SWEEP_SECS",
        default_value_t = 3600
    )]
    pub retention_sweep_secs: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            segment_ms: 2000,
            live_window: 6,
            retention_sweep_secs: 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(#[from] platform::storage::StorageError),
    #[error("mux: {0}")]
    Mux(#[from] mux::MuxError),
}

impl From<StreamError> for platform::ApiError {
    fn from(e: StreamError) -> Self {
        platform::ApiError::internal(e)
    }
}

/// Shared state of every Stream route.
#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub config: Arc<StreamConfig>,
    pub broadcasts: live::Broadcasts,
    /// The Calls media engine WHIP publishes to and WHEP subscribes from.
    pub media: calls::media::MediaCore,
    pub sessions: api::whip::Sessions,
}

impl FromRef<AppState> for Platform {
    fn from_ref(state: &AppState) -> Platform {
        state.platform.clone()
    }
}

#[derive(Clone)]
pub struct StreamService {
    state: AppState,
    sweeper: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl StreamService {
    pub async fn start(
        platform: Platform,
        config: StreamConfig,
        calls: &calls::CallsService,
    ) -> Result<Self, StreamError> {
        let state = AppState {
            platform,
            config: Arc::new(config),
            broadcasts: live::Broadcasts::default(),
            media: calls.media(),
            sessions: api::whip::Sessions::default(),
        };
        let sweeper = tokio::spawn(sweep_expired_recordings(state.clone()));
        Ok(Self {
            state,
            sweeper: Arc::new(std::sync::Mutex::new(Some(sweeper))),
        })
    }

    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// Starts (or resumes within `timeoutSeconds`) the broadcast of live input `input_uid` for a
    /// publisher whose RTP is fed through the returned handle. WHIP uses this after the media
    /// core accepted the offer; tests feed RTP from ffmpeg through it.
    pub async fn begin_broadcast(
        &self,
        input_uid: &str,
        audio: bool,
        keyframe: KeyframeRequester,
    ) -> Result<Publisher, platform::ApiError> {
        api::whip::begin_broadcast(&self.state, input_uid, audio, keyframe).await
    }

    pub async fn shutdown(&self) {
        let handle = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

async fn sweep_expired_recordings(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        state.config.retention_sweep_secs.max(1),
    ));
    loop {
        tick.tick().await;
        let expired =
            match store::expired_videos(&state.platform.db, platform::time_util::now_ms()).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "listing expired recordings failed");
                    continue;
                }
            };
        for video in expired {
            if let Err(e) = live::delete_video(&state.platform, &video.account_id, &video.uid).await
            {
                tracing::warn!(video_id = %video.uid, error = %e, "deleting an expired recording failed");
            } else {
                tracing::info!(video_id = %video.uid, "expired recording deleted");
            }
        }
    }
}
