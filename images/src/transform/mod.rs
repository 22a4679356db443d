//! Sans-IO image work: option parsing, output geometry, upload validation, EXIF, and the
//! decode → resize → encode pipeline. Nothing here touches the network, storage or the clock.

pub mod exif;
pub mod focus;
pub mod geometry;
pub mod jpeg;
pub mod options;
pub mod pipeline;
pub mod probe;

pub use options::TransformOptions;
pub use pipeline::{choose_output, transform, OutputFormat, TransformError};
pub use probe::{probe, Probe, ProbeError, SourceFormat, SourceLimits};
