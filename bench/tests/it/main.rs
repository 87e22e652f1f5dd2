//! fpn-bench integration tests: the coordinated-omission correction against a fake server
//! with an injected stall, and the real client against the real baselines on loopback.

mod co;
mod loopback;
