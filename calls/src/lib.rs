//! Calls: a Cloudflare-Realtime-compatible WebRTC SFU (and, in `calls/turn`, TURN).
//!
//! Layout:
//! - [`sfu`]: the media core. Sans-IO shards on str0m ([`sfu::shard`]) behind one UDP socket
//!   ([`sfu::net`]), addressed through [`sfu::engine::Engine`].
//! - [`api`]: apps management (`/client/v4/accounts/{account_id}/calls/apps`) and the sessions
//!   API (`/v1/apps/{app_id}/sessions/...`).
//! - [`media`]: the public media interface other products (Stream) build on.

pub mod api;
pub mod media;
pub mod sfu;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::Router;
use platform::Platform;

use crate::{
    api::{ApiLimits, ApiState, RateLimiter},
    media::MediaCore,
    sfu::engine::{Engine, EngineConfig},
};

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Calls")]
pub struct CallsConfig {
    /// UDP address of the one media socket every peer connection shares (port 0: any free port).
    #[arg(
        long = "calls-udp-bind",
        env = "MEDIAPLANE_CALLS_UDP_BIND",
        default_value = "0.0.0.0:3480"
    )]
    pub udp_bind: SocketAddr,
    /// IP address advertised in ICE candidates (the public IP behind NAT or in a cloud). Defaults
    /// to the bound address; required when binding a wildcard address.
    #[arg(long = "calls-public-ip", env = "MEDIAPLANE_CALLS_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Media worker threads (shards); 0 means one per CPU core.
    #[arg(
        long = "calls-workers",
        env = "MEDIAPLANE_CALLS_WORKERS",
        default_value_t = 0
    )]
    pub workers: usize,
    /// Kernel send/receive buffer of the media socket, in bytes.
    #[arg(long = "calls-socket-buffer", env = "MEDIAPLANE_CALLS_SOCKET_BUFFER", default_value_t = 8 * 1024 * 1024)]
    pub socket_buffer: usize,
    /// Most tracks (published plus pulled) one session may hold.
    #[arg(
        long = "calls-max-tracks-per-session",
        env = "MEDIAPLANE_CALLS_MAX_TRACKS_PER_SESSION",
        default_value_t = 64
    )]
    pub max_tracks_per_session: usize,
    /// Largest accepted session description, in bytes.
    #[arg(long = "calls-max-sdp-bytes", env = "MEDIAPLANE_CALLS_MAX_SDP_BYTES", default_value_t = 64 * 1024)]
    pub max_sdp_bytes: usize,
    /// Sessions API calls allowed per session per second.
    #[arg(
        long = "calls-api-calls-per-second",
        env = "MEDIAPLANE_CALLS_API_CALLS_PER_SECOND",
        default_value_t = 50
    )]
    pub api_calls_per_second: u32,
    /// Seconds without media after which a track reports `inactive`.
    #[arg(
        long = "calls-inactive-after-secs",
        env = "MEDIAPLANE_CALLS_INACTIVE_AFTER_SECS",
        default_value_t = 30
    )]
    pub inactive_after_secs: u64,
    /// Seconds a session may exist without a working connection (never connected since its
    /// creation, or ICE-disconnected) before the SFU closes it; 0 keeps such sessions forever.
    #[arg(
        long = "calls-idle-timeout-secs",
        env = "MEDIAPLANE_CALLS_IDLE_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub idle_timeout_secs: u64,
}

impl CallsConfig {
    /// Settings for tests: loopback, any free port, two workers.
    pub fn for_tests() -> Self {
        Self {
            udp_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            workers: 2,
            socket_buffer: 4 * 1024 * 1024,
            max_tracks_per_session: 64,
            max_sdp_bytes: 64 * 1024,
            api_calls_per_second: 50,
            inactive_after_secs: 30,
            idle_timeout_secs: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The running Calls product: HTTP routes plus the media plane it owns.
#[derive(Clone)]
pub struct CallsService {
    state: ApiState,
}

impl CallsService {
    pub async fn start(platform: Platform, config: CallsConfig) -> Result<Self, CallsError> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let engine = Engine::start(
            &EngineConfig {
                bind: config.udp_bind,
                public_ip: config.public_ip,
                workers,
                socket_buffer_bytes: config.socket_buffer,
                max_tracks_per_session: config.max_tracks_per_session,
                inactive_after: Duration::from_secs(config.inactive_after_secs),
                idle_timeout: (config.idle_timeout_secs > 0)
                    .then(|| Duration::from_secs(config.idle_timeout_secs)),
            },
            platform.meter.clone(),
        )?;
        let state = ApiState {
            platform,
            engine,
            limits: ApiLimits {
                max_sdp_bytes: config.max_sdp_bytes,
                calls_per_second: config.api_calls_per_second,
            },
            rate: Arc::new(RateLimiter::default()),
        };
        Ok(Self { state })
    }

    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// The media core for other products (Stream's WHIP/WHEP and recorder).
    pub fn media(&self) -> MediaCore {
        MediaCore {
            engine: self.state.engine.clone(),
        }
    }

    /// The address of the media UDP socket.
    pub fn udp_addr(&self) -> SocketAddr {
        self.state.engine.local_addr()
    }

    /// Closes every peer and joins the media threads (off the async runtime: joining blocks).
    pub async fn shutdown(&self) {
        let engine = self.state.engine.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || engine.shutdown()).await {
            tracing::error!(error = %e, "calls shutdown task failed");
        }
    }
}
