//! The ABR ladder: decode a source once, scale once per rung, encode each rung, through
//! FFmpeg's libraries (libavcodec, libswscale) with hardware encoders when present.
//!
//! Access units from the origin's ingest enter on a bounded queue; encoded access units for
//! each rung leave on another, with keyframes forced at the source's keyframe timestamps so
//! every rung segments identically. This is the only crate of the workspace allowed `unsafe`
//! (the FFI), each block with a `// SAFETY:` comment. It is empty until the transcoder lands.
