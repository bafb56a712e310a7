//! Sans-IO media formats: bytes and timestamps in, bytes and events out; no sockets, no
//! clock, no files, so every parser can be tested with byte fixtures and fuzzed.
//!
//! - [`flv`]: RTMP audio/video message bodies (FLV tag bodies) and FLV files.
//! - [`avc`], [`hevc`], [`av1`], [`aac`]: codec configuration records and the CODECS strings.
//! - [`frame`]: normalized access units in a 90 kHz timebase — what ingest produces.
//! - [`fmp4`]: the CMAF fragmented-MP4 writer.
//! - [`ts`]: MPEG-TS demuxing (SRT ingest) into the same access units.
//! - [`packager`]: access units → LL-HLS parts and segments of one rendition.
//! - [`hls`]: the playlist model (writer and parser) and the live-window rules of LL-HLS:
//!   which parts and segments a playlist lists, blocking-reload and delta-update decisions.
//!
//! Ingest in the origin feeds network bytes in; the origin serves what comes out.

#![forbid(unsafe_code)]

pub mod aac;
pub mod annexb;
pub mod av1;
pub mod avc;
mod bits;
pub mod error;
pub mod flv;
pub mod fmp4;
pub mod frame;
pub mod hevc;
pub mod hls;
pub mod packager;
pub mod ts;

pub use error::MediaError;
