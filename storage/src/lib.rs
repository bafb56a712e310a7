//! Object storage for Potok: the store built from `[storage]` (a local directory by default,
//! or an S3-compatible service such as Yandex Object Storage, VK Cloud or Selectel), the
//! origin's on-disk spill queue in front of it, and the recordings index kept in the store.
//!
//! Data enters as objects the origin hands to the [`Spool`] (segments, init segments,
//! playlists, manifests, thumbnails): each is written to local disk first and uploaded in
//! order by one task, so an outage of the store or a restart of the origin loses nothing
//! (up to `storage.spool.max_bytes`; past it writes are dropped, counted and logged). Data
//! leaves through [`Store`] reads: recordings and clips listed, fetched and deleted from the
//! store alone ([`recordings`]), so any node (an edge, the control plane) can serve or manage
//! them with nothing but the store's configuration.
//!
//! Keys in the store:
//! - `{stream}/{broadcast}/{rendition}/{msn}.m4s`, `.../init-N.mp4`: media, as the origin
//!   packaged it (the edge's fallback and DVR read these);
//! - `recordings/{id}.json`: a recording's or clip's [`Manifest`];
//! - `recordings/{id}/{rendition}.m3u8`: its VOD media playlists;
//! - `thumbnails/{stream}.jpg`: the latest thumbnail of a live stream.

#![forbid(unsafe_code)]

mod metrics;
pub mod recordings;
mod spool;
mod store;
pub mod vod;

pub use metrics::StorageMetrics;
pub use recordings::{ClipPlan, Kind, Manifest, RecordingError, RenditionInfo, check_id};
pub use spool::{Spool, SpoolError};
pub use store::{Store, StoreError};
