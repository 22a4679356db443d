//! The onnxruntime shell around RetinaFace, the faster of the two engines (see docs/faces.md: tract runs this
//! network 3–4× slower than onnxruntime at the same thread count, mostly in the small-channel convolutions).
//!
//! onnxruntime is a C++ library, so it is not linked into the binary: `ort` loads `libonnxruntime.so` at start
//! from a path the operator configures (the PyPI `onnxruntime` wheel ships one, so does Microsoft's release
//! archive). Without it, [`crate::FaceDetector`] runs on tract, which needs nothing outside the binary.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

use ort::{
    environment::Environment,
    session::{builder::GraphOptimizationLevel, Session},
    value::TensorRef,
};

use crate::error::FaceError;

/// One output tensor: its shape and values.
pub(crate) type Output = (Vec<usize>, Vec<f32>);

/// The library this process loaded: onnxruntime can be loaded only once per process. A failed load is not
/// remembered, so a corrected path can be tried again.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn environment(library: &Path) -> Result<Environment, FaceError> {
    let mut loaded = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    match &*loaded {
        Some((path, environment)) if path == library => return Ok(environment.clone()),
        Some((path, _)) => {
            return Err(FaceError::RuntimeUnavailable(format!(
                "onnxruntime is already loaded from {} in this process",
                path.display()
            )))
        }
        None => {}
    }
    let unavailable =
        |e: String| FaceError::RuntimeUnavailable(format!("{}: {e}", library.display()));
    let builder = ort::init_from(library).map_err(|e| unavailable(e.to_string()))?;
    let environment = builder.build().map_err(|e| unavailable(e.to_string()))?;
    *loaded = Some((library.to_path_buf(), environment.clone()));
    Ok(environment)
}

/// RetinaFace sessions on onnxruntime. `Session::run` needs exclusive access, so concurrent detections each
/// take one of a few sessions (one per CPU worker that may call in) instead of queueing behind one.
pub(crate) struct OnnxRuntimeNetwork {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl OnnxRuntimeNetwork {
    /// Loads `library` (once per process) and builds `sessions` sessions of `model`, each running its
    /// operators on `threads` threads.
    pub(crate) fn load(
        library: &Path,
        model: &[u8],
        threads: usize,
        sessions: usize,
    ) -> Result<Self, FaceError> {
        let environment = environment(library)?;
        let model_error = |e: ort::Error| FaceError::Model(e.to_string());
        let sessions = (0..sessions.max(1))
            .map(|_| {
                Session::builder(&environment)
                    .map_err(model_error)?
                    .with_optimization_level(GraphOptimizationLevel::All)
                    .map_err(|e| FaceError::Model(e.to_string()))?
                    .with_intra_threads(threads.max(1))
                    .map_err(|e| FaceError::Model(e.to_string()))?
                    .commit_from_memory(model)
                    .map(Mutex::new)
                    .map_err(model_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sessions,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs the network on one NCHW input of `side`×`side` and copies its outputs out.
    pub(crate) fn run(&self, data: &[f32], side: usize) -> Result<Vec<Output>, FaceError> {
        let inference = |e: ort::Error| FaceError::Inference(e.to_string());
        let input =
            TensorRef::from_array_view(([1usize, 3, side, side], data)).map_err(inference)?;
        let mut session = self.session();
        let outputs = session.run(ort::inputs![input]).map_err(inference)?;
        outputs
            .iter()
            .map(|(_, value)| {
                let (shape, values) = value.try_extract_tensor::<f32>().map_err(inference)?;
                let shape = shape.iter().map(|d| usize::try_from(*d).unwrap_or(0));
                Ok((shape.collect(), values.to_vec()))
            })
            .collect()
    }

    /// A free session if there is one, else the next in turn (waiting for it).
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.sessions.len();
        for offset in 0..count {
            if let Ok(session) = self.sessions[(start + offset) % count].try_lock() {
                return session;
            }
        }
        // A panic mid-run leaves the session as usable as onnxruntime left it; poisoning adds nothing.
        self.sessions[start % count]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
