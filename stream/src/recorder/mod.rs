//! Recording: the sans-IO pipeline (ingest → segmenter) and the async shell that muxes closed
//! segments, stores them and records their rows.

pub mod pipeline;
pub mod segmenter;
pub mod writer;
