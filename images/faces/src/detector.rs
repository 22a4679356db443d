//! RetinaFace for one fixed letterbox size, built once, on one of two engines: tract (pure Rust, in the
//! binary, the default) or onnxruntime (loaded from a shared library the operator points at; 3–4× faster on this
//! network, see docs/faces.md). Pre- and post-processing are the same code for both.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

use crate::decode::{decode, Face, Geometry, RawOutputs, DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD};
use crate::error::FaceError;
use crate::letterbox::letterbox;
use crate::onnxruntime::{OnnxRuntimeNetwork, Output};
use crate::priors::{prior_count, priors, Prior};

/// RetinaFace MobileNet-0.25 (see `models/README.md`), compiled into the binary.
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../../../models/retinaface_mv1_0.25.onnx");
/// sha256 of [`DEFAULT_MODEL`]; a test pins it.
pub const DEFAULT_MODEL_SHA256: &str =
    "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5";
/// Letterbox side in pixels. Measured with `examples/size_sweep.rs`: 480 finds faces down to about 4 % of the
/// longer image side (320 only down to about 8 %, 640 no smaller than 480) at about 60 % of the cost of 640;
/// see docs/faces.md.
pub const DEFAULT_INPUT_SIZE: u32 = 480;

type Plan = Arc<TypedRunnableModel>;

/// Which inference engine runs the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// tract-onnx, compiled in: needs nothing at run time.
    Tract,
    /// onnxruntime loaded from `library` (`libonnxruntime.so`); `sessions` concurrent detections run side by
    /// side, more queue.
    OnnxRuntime { library: PathBuf, sessions: usize },
}

impl Engine {
    /// A short name for logs and `format=json`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Tract => "tract",
            Engine::OnnxRuntime { .. } => "onnxruntime",
        }
    }
}

/// The loaded network of one engine.
enum Network {
    Tract {
        plan: Plan,
        /// Outputs whose final Softmax was cut from the graph (see [`cut_output_softmaxes`]); `run` applies it.
        softmax_outputs: Vec<usize>,
    },
    OnnxRuntime(OnnxRuntimeNetwork),
}

/// Which output tensor is which: RetinaFace exports name them `loc`, `conf` and `landmarks`, but their order
/// is the exporter's choice, so they are told apart by their last dimension (4, 2, 10) at load time.
#[derive(Debug, Clone, Copy)]
struct OutputSlots {
    loc: usize,
    conf: usize,
    landmarks: usize,
}

/// A loaded face detector. Cheap to share (`Send + Sync`); `detect` may run on many threads at once.
pub struct FaceDetector {
    network: Network,
    engine: Engine,
    input_size: u32,
    priors: Vec<Prior>,
    slots: OutputSlots,
    score_threshold: f32,
    nms_iou: f32,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDetector")
            .field("engine", &self.engine.name())
            .field("input_size", &self.input_size)
            .field("score_threshold", &self.score_threshold)
            .field("nms_iou", &self.nms_iou)
            .finish_non_exhaustive()
    }
}

impl FaceDetector {
    /// Loads a RetinaFace-compatible ONNX model and optimises it for `input_size`×`input_size` inputs,
    /// single-threaded.
    pub fn from_onnx_bytes(model: &[u8], input_size: u32) -> Result<Self, FaceError> {
        Self::from_onnx_bytes_with_threads(model, input_size, 1)
    }

    /// The committed RetinaFace model ([`DEFAULT_MODEL`]), single-threaded.
    pub fn load_default(input_size: u32) -> Result<Self, FaceError> {
        Self::from_onnx_bytes(DEFAULT_MODEL, input_size)
    }

    /// Like [`FaceDetector::from_onnx_bytes`], with matrix products split over a private pool of `threads`
    /// threads (needs the `multithread-mm` feature, on by default; otherwise `threads` is ignored). Each call
    /// to `detect` then uses that pool, so several concurrent detections share `threads` cores.
    pub fn from_onnx_bytes_with_threads(
        model: &[u8],
        input_size: u32,
        threads: usize,
    ) -> Result<Self, FaceError> {
        Self::from_onnx_bytes_on(model, input_size, threads, Engine::Tract)
    }

    /// Loads the model on `engine`, each detection using `threads` threads (tract: for its matrix products,
    /// with `multithread-mm`; onnxruntime: its intra-op pool).
    pub fn from_onnx_bytes_on(
        model: &[u8],
        input_size: u32,
        threads: usize,
        engine: Engine,
    ) -> Result<Self, FaceError> {
        if !(32..=2048).contains(&input_size) || !input_size.is_multiple_of(32) {
            return Err(FaceError::InvalidInputSize(input_size));
        }
        let network = match &engine {
            Engine::Tract => {
                let model_error = |e: TractError| FaceError::Model(format!("{e:#}"));
                let optimised = optimised_model(model, input_size, &[])?;
                let plan = optimised
                    .model
                    .into_runnable_with_options(&RunOptions {
                        executor: Some(executor(threads)),
                        ..RunOptions::default()
                    })
                    .map_err(model_error)?;
                Network::Tract {
                    plan,
                    softmax_outputs: optimised.softmax_outputs,
                }
            }
            Engine::OnnxRuntime { library, sessions } => Network::OnnxRuntime(
                OnnxRuntimeNetwork::load(library, model, threads, *sessions)?,
            ),
        };
        let mut detector = FaceDetector {
            network,
            engine,
            input_size,
            priors: priors(input_size, input_size),
            slots: OutputSlots {
                loc: 0,
                conf: 1,
                landmarks: 2,
            },
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_iou: DEFAULT_NMS_IOU,
        };
        detector.slots = detector.identify_outputs()?;
        tracing::debug!(
            engine = detector.engine.name(),
            input_size,
            threads,
            "face detector ready"
        );
        Ok(detector)
    }

    /// [`FaceDetector::from_onnx_bytes_on`] for the committed model.
    pub fn load_default_on(
        input_size: u32,
        threads: usize,
        engine: Engine,
    ) -> Result<Self, FaceError> {
        Self::from_onnx_bytes_on(DEFAULT_MODEL, input_size, threads, engine)
    }

    /// The engine this detector runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// [`FaceDetector::from_onnx_bytes_with_threads`] for the committed model.
    pub fn load_default_with_threads(input_size: u32, threads: usize) -> Result<Self, FaceError> {
        Self::from_onnx_bytes_with_threads(DEFAULT_MODEL, input_size, threads)
    }

    /// Changes the minimum face score (default [`DEFAULT_SCORE_THRESHOLD`]).
    pub fn with_score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = threshold;
        self
    }

    /// The letterbox side this detector's plan was optimised for.
    pub fn input_size(&self) -> u32 {
        self.input_size
    }

    /// Finds faces in `image`; boxes and landmarks are in its pixels, best score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, FaceError> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Err(FaceError::EmptyImage { width, height });
        }
        let input = letterbox(image, self.input_size);
        let outputs = self.run(&input.data)?;
        let slice = |i: usize| outputs.slice(i);
        let raw = RawOutputs {
            loc: slice(self.slots.loc)?,
            conf: slice(self.slots.conf)?,
            landmarks: slice(self.slots.landmarks)?,
        };
        let geometry = Geometry {
            input_width: self.input_size,
            input_height: self.input_size,
            scale_x: input.scale_x,
            scale_y: input.scale_y,
            source_width: width,
            source_height: height,
        };
        Ok(decode(
            &raw,
            &self.priors,
            &geometry,
            self.score_threshold,
            self.nms_iou,
        ))
    }

    /// The network input tensor `detect` would feed for `image` (NCHW, BGR, mean-subtracted, letterboxed).
    /// Exposed for benchmarks and cross-checks against other runtimes.
    pub fn network_input(&self, image: &RgbImage) -> Vec<f32> {
        letterbox(image, self.input_size).data
    }

    /// Runs only the network on a prepared input (see [`FaceDetector::network_input`]), discarding the
    /// outputs: the part of `detect` that benchmarks compare with other runtimes.
    pub fn run_network(&self, input: &[f32]) -> Result<(), FaceError> {
        self.run(input).map(drop)
    }

    /// The network's outputs for one input (on tract, with the softmax that was cut from the graph applied).
    fn run(&self, data: &[f32]) -> Result<NetworkOutputs, FaceError> {
        let side = self.input_size as usize;
        let (plan, softmax_outputs) = match &self.network {
            Network::Tract {
                plan,
                softmax_outputs,
            } => (plan, softmax_outputs),
            Network::OnnxRuntime(network) => {
                return Ok(NetworkOutputs(network.run(data, side)?));
            }
        };
        let inference = |e: TractError| FaceError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[1, 3, side, side], data).map_err(inference)?;
        let values = plan.run(tvec!(tensor.into())).map_err(inference)?;
        let mut outputs = values
            .iter()
            .map(|value| {
                let values = value
                    .try_as_plain_ram()
                    .and_then(|view| view.as_slice::<f32>())
                    .map_err(|e| FaceError::UnexpectedOutput(format!("{e:#}")))?;
                Ok((value.shape().to_vec(), values.to_vec()))
            })
            .collect::<Result<Vec<Output>, FaceError>>()?;
        for &index in softmax_outputs {
            if let Some((shape, values)) = outputs.get_mut(index) {
                softmax_rows(values, shape.last().copied().unwrap_or(0));
            }
        }
        Ok(NetworkOutputs(outputs))
    }

    /// Runs the plan once on a blank input (which also warms it up) and maps outputs by shape.
    fn identify_outputs(&self) -> Result<OutputSlots, FaceError> {
        let side = self.input_size as usize;
        let outputs = self.run(&vec![0.0; 3 * side * side])?.0;
        let rows = prior_count(self.input_size, self.input_size);
        let mut found: [Option<usize>; 3] = [None; 3];
        for (index, (shape, _)) in outputs.iter().enumerate() {
            let slot = match shape.as_slice() {
                [1, n, 4] if *n == rows => 0,
                [1, n, 2] if *n == rows => 1,
                [1, n, 10] if *n == rows => 2,
                _ => continue,
            };
            found[slot] = Some(index);
        }
        match found {
            [Some(loc), Some(conf), Some(landmarks)] => Ok(OutputSlots {
                loc,
                conf,
                landmarks,
            }),
            _ => Err(FaceError::UnexpectedOutput(format!(
                "expected [1,{rows},4], [1,{rows},2] and [1,{rows},10], got {:?}",
                outputs.iter().map(|(shape, _)| shape).collect::<Vec<_>>()
            ))),
        }
    }
}

/// One run's outputs (shape and values of each), in the model's output order. Copied out of the engine: a
/// fraction of a millisecond next to the network, and both engines then share the decoding.
struct NetworkOutputs(Vec<Output>);

impl NetworkOutputs {
    fn slice(&self, index: usize) -> Result<&[f32], FaceError> {
        self.0
            .get(index)
            .map(|(_, values)| values.as_slice())
            .ok_or_else(|| FaceError::UnexpectedOutput(format!("no output {index}")))
    }
}

/// Softmax over consecutive rows of `width` values, in place (max subtracted first, so large logits cannot
/// overflow `exp`).
fn softmax_rows(values: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    for row in values.chunks_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

/// What [`optimised_model`] returns.
#[doc(hidden)]
pub struct OptimisedModel {
    pub model: TypedModel,
    /// Indices of the outputs whose trailing Softmax was removed from the graph: they are logits, and the
    /// caller applies the softmax over their last axis.
    pub softmax_outputs: Vec<usize>,
}

/// The optimised tract model [`FaceDetector`] runs for `input_size`×`input_size` inputs, with tract's named
/// model transforms `extra_transforms` (e.g. `conv_nhwc`, `f32_to_f16`) applied after decluttering.
/// `FaceDetector` passes none; this is public so `examples/profile_faces.rs` can time exactly the same graph
/// and try variants of it.
#[doc(hidden)]
pub fn optimised_model(
    model: &[u8],
    input_size: u32,
    extra_transforms: &[&str],
) -> Result<OptimisedModel, FaceError> {
    let model_error = |e: TractError| FaceError::Model(format!("{e:#}"));
    let side = input_size as usize;
    // tract must know the concrete input shape before optimising: with a symbolic shape the FPN's
    // Resize nodes fail at run time, and the convolution strategies are picked from concrete sizes.
    let mut typed = tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(model))
        .map_err(model_error)?
        .with_input_fact(0, f32::fact([1, 3, side, side]).into())
        .map_err(model_error)?
        .into_typed()
        .map_err(model_error)?
        .into_decluttered()
        .map_err(model_error)?;
    lower_nearest_resizes(&mut typed).map_err(model_error)?;
    let softmax_outputs = cut_output_softmaxes(&mut typed).map_err(model_error)?;
    for name in extra_transforms {
        tract_onnx::tract_core::transform::get_transform(name)
            .map_err(model_error)?
            .ok_or_else(|| FaceError::Model(format!("unknown tract transform {name}")))?
            .transform(&mut typed)
            .map_err(model_error)?;
    }
    Ok(OptimisedModel {
        model: typed.into_optimized().map_err(model_error)?,
        softmax_outputs,
    })
}

/// RetinaFace ends its `conf` head with a Softmax over the last axis: [1, N, 2] (background, face). tract
/// runs it row by row, which cost 5.9 ms of a 53 ms run at 480×480 (11 %, per-node CPU time; onnxruntime
/// needs 0.6 ms for it). Applied in Rust on the 2-wide rows it is a few tens of microseconds, so the Softmax is
/// cut from the graph and the output becomes its input (the logits); [`FaceDetector::run`] applies it.
fn cut_output_softmaxes(model: &mut TypedModel) -> TractResult<Vec<usize>> {
    use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
    let mut cut = Vec::new();
    for index in 0..model.outputs.len() {
        let outlet = model.outputs[index];
        let node = model.node(outlet.node);
        let rank = model.outlet_fact(outlet)?.rank();
        let Some(op) = node.op_as::<Softmax>() else {
            continue;
        };
        if op.kind != SoftmaxKind::Softmax
            || op.quant_output_dt.is_some()
            || op.axes.as_slice() != [rank - 1]
            || node.inputs.len() != 1
        {
            continue;
        }
        let logits = node.inputs[0];
        model.outputs[index] = logits;
        cut.push(index);
    }
    Ok(cut)
}

/// The FPN upsamples with ONNX `Resize(mode=nearest, sizes=<shape of the finer level>)`. tract lowers a
/// nearest Resize to its fast `NearestUpsample` (whole-row copies) only when it is given *scales*; with
/// *sizes* it keeps the generic per-axis resampler, which cost ~5 % of the network (perf, 480×480). Once the
/// input shape is fixed the sizes are constants, so the integer scales are known: where tract's own plan for
/// the axis is exact pixel replication, the node is swapped for `NearestUpsample` (same values, bit for bit).
fn lower_nearest_resizes(model: &mut TypedModel) -> TractResult<()> {
    use tract_onnx::tract_core::ops::nn::resize::{
        is_pixel_replication, lower_nearest_integer_upsample,
    };
    use tract_onnx::tract_core::ops::nn::{Interpolator, Resize};
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<Resize>() else {
            continue;
        };
        if op.interpolator != Interpolator::Nearest {
            continue;
        }
        let input = model.outlet_fact(node.inputs[0])?;
        let output = model.outlet_fact(OutletId::new(id, 0))?;
        let (Some(input), Some(output)) = (input.shape.as_concrete(), output.shape.as_concrete())
        else {
            continue;
        };
        if input.len() != output.len()
            || input.iter().zip(output).any(|(i, o)| *i == 0 || o % i != 0)
        {
            continue;
        }
        let scales: Vec<usize> = input.iter().zip(output).map(|(i, o)| o / i).collect();
        let replicates = input
            .iter()
            .zip(&scales)
            .filter(|(_, s)| **s > 1)
            .all(|(len, s)| is_pixel_replication(&op.plan_axis(*s as f32, *len, len * s), *s));
        if !replicates || scales.iter().all(|s| *s == 1) {
            continue;
        }
        if let Some(patch) = lower_nearest_integer_upsample(model, node, &scales)? {
            patch.apply(model)?;
        }
    }
    Ok(())
}

#[cfg(feature = "multithread-mm")]
fn executor(threads: usize) -> multithread::Executor {
    if threads > 1 {
        multithread::Executor::multithread_with_name(threads, "faces-mm")
    } else {
        multithread::Executor::SingleThread
    }
}

#[cfg(not(feature = "multithread-mm"))]
fn executor(_threads: usize) -> multithread::Executor {
    multithread::Executor::SingleThread
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn detector_is_shareable_across_threads() {
        assert_send_sync::<FaceDetector>();
    }

    #[test]
    fn rejects_unusable_input_sizes_before_loading() {
        for size in [0, 16, 100, 4096] {
            let err = FaceDetector::from_onnx_bytes(DEFAULT_MODEL, size).unwrap_err();
            assert_eq!(err.code(), "face_input_size_invalid", "{size}");
        }
    }

    #[test]
    fn softmax_rows_normalises_each_row_and_survives_huge_logits() {
        let mut values = vec![0.0, 0.0, 1.0, 3.0, 1000.0, -1000.0];
        softmax_rows(&mut values, 2);
        assert_eq!(&values[..2], &[0.5, 0.5]);
        let e = (-2.0f32).exp();
        assert!((values[2] - e / (1.0 + e)).abs() < 1e-6, "{values:?}");
        assert!((values[3] - 1.0 / (1.0 + e)).abs() < 1e-6, "{values:?}");
        assert_eq!(&values[4..], &[1.0, 0.0]);
    }

    #[test]
    fn the_default_model_has_its_conf_softmax_cut_and_applied_in_rust() {
        let optimised = optimised_model(DEFAULT_MODEL, 64, &[]).unwrap();
        assert_eq!(optimised.softmax_outputs.len(), 1);
        let detector = FaceDetector::load_default(64).unwrap();
        let Network::Tract {
            softmax_outputs, ..
        } = &detector.network
        else {
            panic!("load_default runs on tract");
        };
        assert_eq!(softmax_outputs, &vec![detector.slots.conf]);
        let outputs = detector.run(&vec![0.0; 3 * 64 * 64]).unwrap();
        for row in outputs.slice(detector.slots.conf).unwrap().chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn rejects_bytes_that_are_not_a_model() {
        let err = FaceDetector::from_onnx_bytes(b"definitely not onnx", 64).unwrap_err();
        assert_eq!(err.code(), "face_model_invalid");
    }
}
