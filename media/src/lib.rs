//! Sans-IO media formats: bytes and timestamps in, bytes and events out; no sockets, no
//! clock, no files, so every parser can be tested with byte fixtures and fuzzed.
//!
//! This crate will own FLV tags and RTMP message payloads, MPEG-TS demuxing, H.264/H.265/AAC
//! bitstream parsing, the CMAF fMP4 muxer and the HLS/LL-HLS playlist model. Ingest in the
//! origin feeds it network bytes; it hands back normalized access units, fMP4 fragments and
//! playlist text for the origin to serve. It is empty until the media core lands.

#![forbid(unsafe_code)]
