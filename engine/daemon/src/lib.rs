//! flashpointd: the Flashpoint daemon.
//!
//! This crate holds the daemon's start-up configuration: the layered loader
//! ([`config::load`]), its validated result ([`config::Settings`]), the core map
//! ([`cores::CoreMap`]) and the idle strategies ([`idle::IdleStrategy`]). The runtime is wired
//! in later; it receives a `Settings` and starts nothing unless the whole configuration is
//! valid.

pub mod cli;
pub mod config;
pub mod cores;
pub mod idle;

pub use config::{Config, ConfigError, ConfigErrors, Inputs, Loaded, Settings, load};
pub use cores::{CoreMap, CpuPlan, CpuSet, PerRole, Role, RoleInstance};
pub use idle::IdleStrategy;

/// Exit code for an invalid configuration or command line.
pub const EXIT_CONFIG: u8 = 2;
