//! flashpointd: the Flashpoint daemon.
//!
//! This crate holds the daemon's start-up configuration: the layered loader
//! ([`config::load`]), its validated result ([`config::Settings`]), the core map
//! ([`cores::CoreMap`]) and the idle strategies ([`idle::IdleStrategy`]), and the
//! thread-per-core runtime ([`run::run`]) that starts from a `Settings` and nothing else
//! (`docs/daemon.md`).

pub mod cli;
pub mod config;
pub mod cores;
pub mod idle;
pub mod journal_files;
pub mod prover;
pub mod recovery;
pub mod replay;
pub mod run;

pub use config::{Config, ConfigError, ConfigErrors, Inputs, Loaded, Settings, load};
pub use cores::{CoreMap, CpuPlan, CpuSet, PerRole, Role, RoleInstance};
pub use idle::IdleStrategy;

/// Exit code for an invalid configuration or command line.
pub const EXIT_CONFIG: u8 = 2;
