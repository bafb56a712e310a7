//! The real-time area: the bus between replicas ([`bus`]) and the WebSocket gateway
//! ([`gateway`]) that browsers and overlays keep open, with the per-replica fan-out hub
//! ([`hub`]). Chat is its first user; donation alerts, overlays and notifications will use
//! the same channels. The protocol is documented in `docs/realtime.md`.

pub(crate) mod bus;
pub(crate) mod gateway;
pub(crate) mod hub;
