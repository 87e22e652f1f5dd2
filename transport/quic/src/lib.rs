//! The QUIC intake of `flashpointd` (`docs/transport.md`, the `fpn/1` protocol).
//!
//! - [`server`]: the sans-IO [`Server`] (quinn-proto endpoint, sessions, limits, receipts).
//! - [`udp`]: the thin UDP driver (recvmmsg + GRO + SO_TIMESTAMPING, sendmsg + GSO), and
//!   [`hwtstamp`], which switches a NIC's hardware receive stamping on for it.
//! - [`tls`]: the certificate (PEM files, or self-signed at first start) and rustls configs
//!   on the `ring` provider.
//! - [`client`]: a small client on quinn-proto, for tests and tools: the sans-IO
//!   [`client::ClientCore`] and the blocking [`client::Client`] that drives it over a socket.
//!
//! This crate never imports the engine: records go to the engine through [`Admit`].

pub mod client;
pub mod hwtstamp;
pub mod server;
pub mod tls;
pub mod udp;

pub use quinn_proto;
pub use server::{
    Admit, Auth, Counters, Limits, RECEIPTS_HELD_MAX, Server, ServerConfig, Transmit, handle_frame,
};

/// The server against the client in memory, with a fake clock.
#[cfg(test)]
mod tests;
