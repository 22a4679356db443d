//! Face detection and focal points for image crops (`gravity=face` and `gravity=auto`).
//!
//! - [`FaceDetector`] runs RetinaFace (MobileNet-0.25, `models/retinaface_mv1_0.25.onnx`) on tract-onnx, or on
//!   onnxruntime when the operator provides its library ([`Engine`]): the image
//!   is letterboxed into one fixed square input, the network runs on a plan optimised once for that size, and
//!   the outputs are decoded against the prior boxes and filtered with NMS. Boxes come back in source pixels.
//! - [`face_crop`] turns faces into a crop rectangle of the requested aspect ratio, with Cloudflare's `zoom`.
//! - [`saliency_focus`] finds a focal point with the spectral-residual method; [`focus_crop`] crops around it;
//!   [`auto_crop`] combines both with faces for `gravity=auto`.
//!
//! Everything here is synchronous and CPU-bound: callers run it on their blocking pool.

mod crop;
mod decode;
mod detector;
mod error;
mod fft;
mod letterbox;
mod onnxruntime;
mod priors;
mod saliency;

pub use crop::{auto_crop, face_crop, focus_crop, CropRect};
pub use decode::{Face, DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD};
#[doc(hidden)]
pub use detector::{optimised_model, OptimisedModel};
pub use detector::{Engine, FaceDetector, DEFAULT_INPUT_SIZE, DEFAULT_MODEL, DEFAULT_MODEL_SHA256};
pub use error::FaceError;
pub use saliency::saliency_focus;
