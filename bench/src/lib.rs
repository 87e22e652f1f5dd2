//! `fpn-bench`: the open-loop tail-latency harness (`bench/README.md`).
//!
//! Sans-IO cores first, as everywhere in Flashpoint: `load` (what to send and when) and
//! `track` (matching answers, the corrected and naive histograms) take time as an argument.
//! `client` drives them over QUIC or UDP; `servers` are the bare baselines; `engine` starts
//! `flashpointd`; `report` writes the percentile distributions, the JSON summary and the plot;
//! `suite` runs a whole comparison.

pub mod client;
pub mod echo;
pub mod engine;
pub mod load;
pub mod procstat;
pub mod report;
pub mod servers;
pub mod suite;
pub mod svg;
pub mod tls;
pub mod track;
