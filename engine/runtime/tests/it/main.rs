//! Integration tests of fpn-runtime: real sockets, real pinned executors, bounded in time.

mod admin;
mod exec;
mod no_alloc;
mod notify;
mod shard;
