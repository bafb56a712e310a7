//! HLS: the playlist model with its writer and parser ([`playlist`]) and the live-window
//! rules of Low-Latency HLS for one rendition ([`live`]).

pub mod live;
pub mod playlist;
