//! One file per role: its context (the struct), its step ([`crate::run::role::RoleLoop`]),
//! its metrics, and how it takes its rings from the topology (`build`).
//!
//! | file | role instances | sans-IO core |
//! |---|---|---|
//! | `intake.rs` (+ `admission.rs`, `quic.rs`, `webtransport.rs`) | `intake<i>` | `IntakeCore`, `CloseLeader` / `CloseFollower` |
//! | `builder.rs` | `builder<k>` | `BuilderShard` |
//! | `build_worker.rs` | `build_worker<i>` | `BuildWorker` |
//! | `merger.rs` | `merger` | `Merger` |
//! | `log.rs` | `log` | `fpn_log::Encoder` (I/O driver: `run/log_file.rs`) |
//! | `journal.rs` | `journal` | none (I/O driver) |
//! | `prover.rs` | `prover` | `PoolCore` (`crate::prover::pool`) |
//! | `admin.rs` | `admin` (std threads, not an executor task) | none |

pub mod admin;
pub mod admission;
pub mod build_worker;
pub mod builder;
pub mod intake;
pub mod journal;
pub mod log;
pub mod merger;
pub mod prover;
pub mod quic;
pub mod webtransport;
