//! The WebTransport intake of `fpn/1` (`docs/webtransport.md`): browsers reach the engine over
//! HTTP/3, where raw QUIC is out of their reach.
//!
//! - [`endpoint`]: the endpoint on its own UDP port and its own thread (a current-thread tokio
//!   runtime with quinn and h3), the extended CONNECT on [`wt::DEFAULT_PATH`], and inside it the
//!   `fpn/1` session of `docs/transport.md` unchanged.
//! - [`session`]: the sessions, sans-IO (limits, hello, token buckets, receipts, fan-out).
//! - [`engine`]: the bounded interface to the engine's intake ([`EngineSide`]).
//! - [`cert`]: the short-lived self-signed certificate browsers pin by hash, renewed before
//!   it expires, or a configured PEM pair.
//! - [`client`]: a Rust WebTransport client of `fpn/1`, for tests and the bench harness.
//! - [`page`]: the browser client (`js/fpn.js`) and the demo page, as strings to serve.
//! - [`metrics`]: the endpoint's counters (`fpn_webtransport_*`).
//! - [`stream_start`]: a workaround for h3 0.0.8, which can leave a unidirectional stream
//!   unread.
//! - [`wt`]: WebTransport constants, stream error codes, QUIC varints.
//! - `testing` (feature): a test engine and a tiny page server.
//!
//! This crate never imports the engine: frames reach it through [`EngineSide`], which calls
//! the [`fpn_quic::Admit`] the daemon already implements for the raw QUIC intake.

pub mod cert;
pub mod client;
pub mod endpoint;
pub mod engine;
pub mod metrics;
pub mod page;
pub mod session;
pub mod stream_start;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wt;

pub use cert::{CertError, CertSource, Certificate};
pub use endpoint::{Config, Endpoint, EndpointHandle, EndpointInfo, EndpointWatch, StartError};
pub use engine::{EndpointQueues, EngineSide, FrameIn, QueueConfig, SessionKey, ToSession, Via, queues};
pub use metrics::Counters;
