//! The ABR ladder: decode a source once, scale once per rung, encode each rung, through
//! FFmpeg's libraries (libavcodec, libswscale) with hardware encoders when present.
//!
//! Access units from the origin's ingest enter on a bounded queue; encoded access units for
//! each rung leave through a [`LadderSink`], with keyframes forced at the source's keyframe
//! timestamps so every rung segments identically (see [`ladder`]). This is the only crate
//! of the workspace allowed `unsafe` (the FFI, all in `ffi.rs`), each block with a
//! `// SAFETY:` comment.

pub mod encoders;
mod ffi;
pub mod ladder;
mod metrics;
pub mod thumbnail;

pub use encoders::{Choice, ChoiceError, EncoderSettings, Probe};
pub use ffi::{AvError, HwKind, VideoCodec};
pub use ladder::{
    Ladder, LadderError, LadderSettings, LadderSink, PlannedRung, RungSpec, request_shed,
};
pub use metrics::{LadderStats, TranscodeMetrics};
