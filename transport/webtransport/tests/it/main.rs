//! The endpoint over loopback, with the test engine: the Rust client, node's tests of the
//! browser module, and a real Chromium.

mod browser;
mod client;
mod node;
mod util;
