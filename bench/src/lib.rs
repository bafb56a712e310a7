//! Benchmarks and load tools: end-to-end comparisons of Potok against references measured in
//! the same run on the same machine (nginx for file serving, the ffmpeg CLI for transcoding,
//! peers for latency), each printing the reference, Potok's number and their ratio.
//!
//! Benchmarks land with the issues whose targets they measure.

#![forbid(unsafe_code)]
