//! Images: uploads, direct creator uploads, variants, signed delivery, `/cdn-cgi/image`
//! transforms and the embeddable upload widget (Cloudflare Images compatible).
//!
//! Layout: `transform/` is the sans-IO image core (options, geometry, probe, pipeline); `api/` the
//! HTTP shell; `store` the database rows; `fetch` the SSRF-guarded remote fetcher; `signing` the
//! delivery URL signatures; `engine` the derivative cache, single-flight and bounded CPU pool.

pub mod api;
pub mod engine;
pub mod faces;
pub mod fetch;
pub mod signing;
pub mod store;
pub mod transform;

use std::sync::Arc;

use axum::Router;
use platform::Platform;

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Images")]
pub struct ImagesConfig {
    /// Largest image file accepted by uploads, in bytes.
    #[arg(long = "images-max-upload-bytes", env = "MEDIAPLANE_IMAGES_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Largest image accepted, in megapixels (width × height / 1,000,000); refused from the header,
    /// before decoding, so decompression bombs never allocate.
    #[arg(
        long = "images-max-megapixels",
        env = "MEDIAPLANE_IMAGES_MAX_MEGAPIXELS",
        default_value_t = 100
    )]
    pub max_megapixels: u64,

    /// Largest width or height accepted, in pixels.
    #[arg(
        long = "images-max-side",
        env = "MEDIAPLANE_IMAGES_MAX_SIDE",
        default_value_t = 12_000
    )]
    pub max_side: u32,

    /// Most images an account may store (reported as `allowed` by the stats endpoint).
    #[arg(
        long = "images-max-images",
        env = "MEDIAPLANE_IMAGES_MAX_IMAGES",
        default_value_t = 1_000_000
    )]
    pub max_images: u64,

    /// Path prefix of delivery URLs: `<prefix>/<account_hash>/<image_id>/<variant or options>`.
    #[arg(
        long = "images-delivery-prefix",
        env = "MEDIAPLANE_IMAGES_DELIVERY_PREFIX",
        default_value = "/images/delivery"
    )]
    pub delivery_prefix: String,

    /// Transforms run at most this many at once on the blocking pool (0 = number of CPUs).
    #[arg(
        long = "images-transform-workers",
        env = "MEDIAPLANE_IMAGES_TRANSFORM_WORKERS",
        default_value_t = 0
    )]
    pub transform_workers: usize,

    /// Origins (`https://host[:port]`, comma separated) `/cdn-cgi/image` may fetch remote sources from.
    /// Empty: only this platform's images.
    #[arg(
        long = "images-remote-origins",
        env = "MEDIAPLANE_IMAGES_REMOTE_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub remote_origins: Vec<String>,

    /// TESTS ONLY: let remote fetches reach loopback addresses (everything else private stays refused).
    #[arg(
        long = "images-remote-allow-loopback",
        env = "MEDIAPLANE_IMAGES_REMOTE_ALLOW_LOOPBACK",
        default_value_t = false
    )]
    pub remote_allow_loopback: bool,

    /// Largest remote source fetched, in bytes.
    #[arg(long = "images-remote-max-bytes", env = "MEDIAPLANE_IMAGES_REMOTE_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub remote_max_bytes: u64,

    /// Time limit of one remote fetch (all redirects included), in seconds.
    #[arg(
        long = "images-remote-timeout-secs",
        env = "MEDIAPLANE_IMAGES_REMOTE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub remote_timeout_secs: u64,

    /// How long a fetched remote source and its derivatives are reused before refetching, in seconds.
    #[arg(
        long = "images-remote-cache-secs",
        env = "MEDIAPLANE_IMAGES_REMOTE_CACHE_SECS",
        default_value_t = 3600
    )]
    pub remote_cache_secs: u64,

    /// `Cache-Control: max-age` of delivered images, in seconds.
    #[arg(
        long = "images-browser-ttl-secs",
        env = "MEDIAPLANE_IMAGES_BROWSER_TTL_SECS",
        default_value_t = 86_400
    )]
    pub browser_ttl_secs: u64,

    /// RetinaFace ONNX model for `gravity=face|auto` (a RetinaFace-compatible export); empty = the copy of
    /// models/retinaface_mv1_0.25.onnx built into the binary.
    #[arg(
        long = "images-face-model",
        env = "MEDIAPLANE_IMAGES_FACE_MODEL",
        default_value = ""
    )]
    pub face_model: String,

    /// Letterbox side the face detector runs at (multiple of 32; 480 measured best, see docs/faces.md).
    #[arg(
        long = "images-face-input-size",
        env = "MEDIAPLANE_IMAGES_FACE_INPUT_SIZE",
        default_value_t = images_faces::DEFAULT_INPUT_SIZE
    )]
    pub face_input_size: u32,

    /// Path to onnxruntime's shared library (`libonnxruntime.so`, e.g. from the PyPI `onnxruntime` wheel): when
    /// set, face detection runs on onnxruntime (2.5-4x faster than tract here, see docs/faces.md); empty = tract,
    /// built in.
    #[arg(
        long = "images-onnxruntime-library",
        env = "MEDIAPLANE_IMAGES_ONNXRUNTIME_LIBRARY",
        default_value = ""
    )]
    pub onnxruntime_library: String,
}

impl ImagesConfig {
    /// Defaults, as `mediaplane` would start with no flags.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ImagesConfig,
        }
        <Wrapper as clap::Parser>::parse_from(["images"]).config
    }

    pub fn source_limits(&self) -> transform::SourceLimits {
        transform::SourceLimits {
            max_bytes: self.max_upload_bytes,
            max_pixels: self.max_megapixels.saturating_mul(1_000_000),
            max_side: self.max_side,
        }
    }

    fn validate(&mut self) -> Result<(), ImagesError> {
        let prefix = self.delivery_prefix.trim_end_matches('/').to_string();
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.contains(['{', '}', '*', '?', '#'])
        {
            return Err(ImagesError::Config(format!(
                "images delivery prefix {:?} must be a path like /images/delivery",
                self.delivery_prefix
            )));
        }
        self.delivery_prefix = prefix;
        self.remote_origins = self
            .remote_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &self.remote_origins {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
                return Err(ImagesError::Config(format!(
                    "remote origin {origin:?} must look like https://host[:port]"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("config: {0}")]
    Config(String),
}

#[derive(Clone)]
pub struct ImagesService {
    state: api::AppState,
}

impl ImagesService {
    pub async fn start(platform: Platform, mut config: ImagesConfig) -> Result<Self, ImagesError> {
        config.validate()?;
        let engine = engine::Engine::new(&config);
        let faces = faces::Faces::start(&config)?;
        let state = api::AppState(Arc::new(api::Inner::new(platform, config, engine, faces)));
        tracing::info!(prefix = %state.0.config.delivery_prefix, "images service started");
        Ok(Self { state })
    }

    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// How many derivatives this process has computed (cache misses); for tests and metrics.
    pub fn transforms_computed(&self) -> u64 {
        self.state.0.engine.computed()
    }

    pub async fn shutdown(&self) {}
}
