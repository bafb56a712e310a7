//! Benchmarks and load tools: end-to-end comparisons of Potok against references measured in
//! the same run on the same machine (nginx for file serving, nginx-rtmp for HLS latency, the
//! ffmpeg CLI for transcoding), each printing the reference, Potok's number and their ratio.
//!
//! - [`llhls`]: `bench llhls-latency` — how soon after a frame leaves the publisher the part
//!   holding it can be downloaded, and how far behind live hls.js plays.
//! - [`edge`]: `bench edge-static` — the edge's cache-hit throughput against nginx sendfile.
//! - [`h3load`]: `bench edge-h3` — the same cache hits over HTTP/3 and HTTP/1.1.
//! - [`ladder`]: `bench ladder` — the in-process ABR ladder against the ffmpeg CLI.
//! - [`viewers`]: `bench viewers` — thousands of simulated LL-HLS viewers on one edge.
//! - [`chat`]: `bench chat` — WebSocket chat fan-out against a Node.js `ws` broadcast server.
//! - [`ledger`]: `bench ledger` — donations through the payment-notification path on
//!   PostgreSQL against pgbench's simple-update.
//! - [`weblatency`]: `bench web-latency` — glass-to-glass latency of the watch page's player
//!   against plain hls.js defaults, read back from the displayed frames in Chromium.
//! - [`alerts`]: `bench alerts` — a donation's confirmation to its alert on screen in the
//!   overlay page (Chromium), against the same event on a plain WebSocket client.
//! - [`rtmp`]: an RTMP publisher that sends one FLV source to several servers at once and
//!   records when each video frame left.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod chat;
pub mod edge;
pub mod h3load;
pub mod ladder;
pub mod ledger;
pub mod llhls;
pub mod rtmp;
pub mod stats;
pub mod viewers;
pub mod weblatency;
