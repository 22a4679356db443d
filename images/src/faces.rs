//! Faces for `gravity=face|auto` and `format=json`: the RetinaFace detector (images-faces crate), loaded once
//! per process, and the face records of each source.
//!
//! Faces are detected once per source version, lazily, the first time a transform needs them (a derivative
//! cache miss with `gravity=face|auto` or `format=json`), on the bounded CPU pool, and kept:
//! - stored images: in the `image_faces` table keyed by (storage_uid, version), so every process and every
//!   later transform of that original reuses them;
//! - remote `/cdn-cgi/image` sources: as `faces.json` next to the cached source in object storage, under the
//!   same time-bucketed prefix, so a refetched source version gets fresh detections.
//!
//! Lazily rather than at upload: most images are never delivered with face gravity, and detection costs a
//! decode plus ~110 ms of network time (480 px, one core) per image.

use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use images_faces::{Engine, Face, FaceDetector, FaceError};
use platform::{time_util::now_ms, ApiError, ObjectKey};
use tokio::sync::OnceCell;

use crate::{
    api::{transform_error, Inner},
    store::{self, ImageRow},
    transform::{pipeline, Probe},
    ImagesConfig, ImagesError,
};

pub use crate::transform::focus::FaceInfo;

/// The process's face detector: the model bytes are read at start (a bad path fails start-up), the network is
/// loaded once (tract: its plan optimised), in the background right after start, and shared by every detection.
#[derive(Clone)]
pub struct Faces {
    /// `None`: the model built into images-faces.
    model: Option<Arc<Vec<u8>>>,
    input_size: u32,
    engine: Engine,
    detector: Arc<OnceCell<Arc<FaceDetector>>>,
}

impl Faces {
    pub fn start(config: &ImagesConfig) -> Result<Self, ImagesError> {
        let size = config.face_input_size;
        if !(32..=2048).contains(&size) || !size.is_multiple_of(32) {
            return Err(ImagesError::Config(format!(
                "images face input size {size} must be a multiple of 32 between 32 and 2048"
            )));
        }
        let model = match config.face_model.trim() {
            "" => None,
            path => Some(Arc::new(std::fs::read(path).map_err(|e| {
                ImagesError::Config(format!("images face model {path:?}: {e}"))
            })?)),
        };
        let engine = match config.onnxruntime_library.trim() {
            "" => Engine::Tract,
            path => {
                if !std::path::Path::new(path).is_file() {
                    return Err(ImagesError::Config(format!(
                        "images onnxruntime library {path:?} is not a file"
                    )));
                }
                Engine::OnnxRuntime {
                    library: path.into(),
                    // One session per transform worker: detections run on that pool.
                    sessions: crate::engine::worker_count(config.transform_workers),
                }
            }
        };
        let faces = Self {
            model,
            input_size: size,
            engine,
            detector: Arc::new(OnceCell::new()),
        };
        let warm = faces.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.detector().await {
                tracing::error!(error = %e.message, "face detector failed to load");
            }
        });
        Ok(faces)
    }

    /// The loaded detector, waiting for the background load if it is still running.
    pub async fn detector(&self) -> Result<Arc<FaceDetector>, ApiError> {
        self.detector
            .get_or_try_init(|| async {
                let (model, size, engine) =
                    (self.model.clone(), self.input_size, self.engine.clone());
                let engine_name = engine.name();
                let started = std::time::Instant::now();
                let detector = tokio::task::spawn_blocking(move || match model {
                    Some(bytes) => FaceDetector::from_onnx_bytes_on(&bytes, size, 1, engine),
                    None => FaceDetector::load_default_on(size, 1, engine),
                })
                .await
                .map_err(ApiError::internal)?
                .map_err(face_error)?;
                tracing::info!(
                    engine = engine_name,
                    input_size = size,
                    ms = started.elapsed().as_millis() as u64,
                    "face detector loaded"
                );
                Ok(Arc::new(detector))
            })
            .await
            .cloned()
    }
}

pub fn face_error(e: FaceError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        5505,
        "face_detection_failed",
        format!("{} ({})", e, e.code()),
    )
}

/// Detects the faces of `data` (CPU-bound: run it on the pool). The source is decoded at about twice the
/// detector's letterbox side (JPEG shrink-on-load), oriented, and the boxes scaled back to full size.
pub fn detect(detector: &FaceDetector, data: &[u8], probe: &Probe) -> Result<FaceInfo, ApiError> {
    let preview = pipeline::oriented_preview(data, probe, detector.input_size() * 2)
        .map_err(transform_error)?;
    let found = detector.detect(&preview.image).map_err(face_error)?;
    let sx = preview.full_width as f32 / preview.image.width() as f32;
    let sy = preview.full_height as f32 / preview.image.height() as f32;
    let faces = found
        .into_iter()
        .map(|f| Face {
            x1: f.x1 * sx,
            y1: f.y1 * sy,
            x2: f.x2 * sx,
            y2: f.y2 * sy,
            score: f.score,
            landmarks: f.landmarks.map(|[x, y]| [x * sx, y * sy]),
        })
        .collect();
    Ok(FaceInfo {
        width: preview.full_width,
        height: preview.full_height,
        faces,
    })
}

fn parse(json: &[u8]) -> Result<FaceInfo, ApiError> {
    serde_json::from_slice(json).map_err(|e| ApiError::internal(format!("stored faces: {e}")))
}

async fn detect_on_pool(state: &Inner, data: Bytes, probe: Probe) -> Result<FaceInfo, ApiError> {
    let detector = state.faces.detector().await?;
    state
        .engine
        .cpu(move || detect(&detector, &data, &probe))
        .await?
}

/// The faces of a stored image's current original, detecting and recording them on first need.
pub async fn for_stored(
    state: &Inner,
    row: &ImageRow,
    data: &Bytes,
    probe: &Probe,
) -> Result<FaceInfo, ApiError> {
    let db = &state.platform.db;
    let lookup = || async {
        match store::get_faces(db, &row.storage_uid, row.version).await? {
            Some(json) => parse(json.as_bytes()).map(Some),
            None => Ok(None),
        }
    };
    let name = format!("faces:{}:{}", row.storage_uid, row.version);
    let (info, computed) = state
        .engine
        .single_flight(&name, lookup, || async {
            let info = detect_on_pool(state, data.clone(), *probe).await?;
            let json = serde_json::to_string(&info).map_err(ApiError::internal)?;
            store::put_faces(db, &row.storage_uid, row.version, &json, now_ms()).await?;
            Ok::<_, ApiError>(info)
        })
        .await?;
    if computed {
        tracing::info!(image_id = %row.id, faces = info.faces.len(), "faces detected");
    }
    Ok(info)
}

/// The faces of a remote source, cached as `faces.json` under the source's (time-bucketed) prefix.
pub async fn for_remote(
    state: &Inner,
    prefix: &ObjectKey,
    data: &Bytes,
    probe: &Probe,
) -> Result<FaceInfo, ApiError> {
    let key = prefix.join(&["faces.json"])?;
    let storage = &state.platform.storage;
    let lookup = || async { Ok::<_, ApiError>(storage.get(&key).await?) };
    let (json, _) = state
        .engine
        .single_flight(key.as_str(), lookup, || async {
            let info = detect_on_pool(state, data.clone(), *probe).await?;
            let json = Bytes::from(serde_json::to_vec(&info).map_err(ApiError::internal)?);
            if let Err(e) = storage.put(&key, json.clone()).await {
                tracing::warn!(key = %key, error = %e, "storing detected faces failed");
            }
            Ok(json)
        })
        .await?;
    parse(&json)
}
