use thiserror::Error;

/// Why face detection could not run. Stable `code()`s let callers map these onto API errors.
#[derive(Debug, Error)]
pub enum FaceError {
    /// The ONNX bytes could not be loaded or optimised for the requested input size.
    #[error("face model could not be loaded: {0}")]
    Model(String),
    /// The letterbox size is unusable (it must be a multiple of 32 within 32..=2048).
    #[error("invalid face detector input size {0}: use a multiple of 32 between 32 and 2048")]
    InvalidInputSize(u32),
    /// The model's outputs do not look like RetinaFace's (`loc`, `conf`, `landmarks`).
    #[error("face model produced unexpected outputs: {0}")]
    UnexpectedOutput(String),
    /// An image with zero width or height has nothing to detect in.
    #[error("image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    /// The configured inference engine could not be loaded (e.g. no onnxruntime library at the path).
    #[error("face inference engine unavailable: {0}")]
    RuntimeUnavailable(String),
    /// The engine failed while running the network.
    #[error("face detection failed: {0}")]
    Inference(String),
}

impl FaceError {
    /// A short, stable identifier for logs and API error envelopes.
    pub fn code(&self) -> &'static str {
        match self {
            FaceError::Model(_) => "face_model_invalid",
            FaceError::InvalidInputSize(_) => "face_input_size_invalid",
            FaceError::UnexpectedOutput(_) => "face_model_output_unexpected",
            FaceError::EmptyImage { .. } => "image_empty",
            FaceError::RuntimeUnavailable(_) => "face_engine_unavailable",
            FaceError::Inference(_) => "face_inference_failed",
        }
    }
}
