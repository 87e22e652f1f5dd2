//! Runtime primitives for `flashpointd`: pinned thread-per-core shards joined by SPSC rings.
//!
//! - [`ring`]: bounded SPSC rings; a full ring hands the value back.
//! - [`clock`]: the one clock every stamp comes from (`now_ns`).
//! - [`idle`]: what a run loop does when it found no work (spin, spin-then-park, park).
//! - [`exec`]: one pinned glommio executor per CPU, roles as tasks, a shared stop flag.
//! - [`metrics`]: shard-local counters and histograms, published in housekeeping,
//!   rendered as Prometheus text and JSON.
//! - [`admin`]: a bounded HTTP/1.1 server for the admin endpoint, off the hot cores.
//! - [`notify`]: systemd `sd_notify` and the watchdog interval.
//! - [`heartbeat`]: per-shard liveness counters and a checker.
//! - [`housekeeping`]: the periodic deadline for a run loop's housekeeping.
//!
//! A shard's run loop (see `docs/runtime.md`):
//!
//! ```text
//! loop {
//!     if stop.is_stopped() { break }
//!     let now_ns = clock::now_ns();   // once per iteration
//!     let did_work = drain inputs (Rx::drain) + work + publish outputs (Tx::try_push);
//!     if housekeeping.due_at(now_ns) { publisher.publish(..); heartbeat.beat(); }
//!     idler.idle(did_work).perform(ctx.park_mode).await;
//! }
//! ```
//!
//! `unsafe` lives only in [`exec`] (affinity, rlimit, current CPU).

pub mod admin;
pub mod clock;
pub mod exec;
pub mod heartbeat;
pub mod housekeeping;
pub mod idle;
pub mod metrics;
pub mod notify;
pub mod ring;
