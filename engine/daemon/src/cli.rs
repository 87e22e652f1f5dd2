//! Command-line flags. Flags are the top configuration layer.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{ConfigErrors, Flag, Inputs};

/// flashpointd: the Flashpoint intent/orderflow engine daemon.
///
/// Configuration precedence, lowest first: built-in defaults < the TOML file (--config or
/// FPN_CONFIG) < FPN_* environment variables < flags. See docs/config.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "flashpointd", version)]
pub struct Cli {
    /// TOML config file. Without it, FPN_CONFIG names the file; without both, no file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Sets engine.data_dir.
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<String>,

    /// Sets admin.addr (IP:port).
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<String>,

    /// Sets engine.profile: default, test or tuned.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Sets any key, e.g. --set window.duration_ms=10 (repeatable; a later one wins;
    /// the dedicated flags above win over --set).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Prints the merged configuration as TOML, with the resolved core map, and exits.
    #[arg(long, conflicts_with = "check_config")]
    pub print_config: bool,

    /// Validates the configuration, prints "ok" or the errors (exit code 2), and exits.
    #[arg(long)]
    pub check_config: bool,
}

impl Cli {
    /// The loader's inputs for this process: these flags, the process's `FPN_*` environment
    /// and the config file they name (read here).
    pub fn inputs(&self) -> Result<Inputs, ConfigErrors> {
        // Only FPN_* variables are configuration. A non-UTF-8 value is passed on lossily and
        // then fails validation with its key named.
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                k.starts_with("FPN_").then(|| (k, v.to_string_lossy().into_owned()))
            })
            .collect();
        Inputs::gather(self.config.clone(), env, self.flags())
    }

    /// The flags that set keys, in precedence order (last wins).
    pub fn flags(&self) -> Vec<Flag> {
        let mut flags: Vec<Flag> = self.set.iter().cloned().map(Flag::Set).collect();
        let dedicated = [
            ("--data-dir", "engine.data_dir", &self.data_dir),
            ("--admin-addr", "admin.addr", &self.admin_addr),
            ("--profile", "engine.profile", &self.profile),
        ];
        for (flag, key, value) in dedicated {
            if let Some(value) = value {
                flags.push(Flag::Key { flag, key, value: value.clone() });
            }
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedicated_flags_come_after_set() {
        let cli = Cli::parse_from([
            "flashpointd",
            "--profile",
            "tuned",
            "--set",
            "engine.profile=test",
            "--set",
            "window.duration_ms=5",
            "--data-dir",
            "/d",
        ]);
        assert_eq!(
            cli.flags(),
            vec![
                Flag::Set("engine.profile=test".into()),
                Flag::Set("window.duration_ms=5".into()),
                Flag::Key { flag: "--data-dir", key: "engine.data_dir", value: "/d".into() },
                Flag::Key { flag: "--profile", key: "engine.profile", value: "tuned".into() },
            ]
        );
    }

    #[test]
    fn print_and_check_conflict() {
        assert!(Cli::try_parse_from(["flashpointd", "--print-config", "--check-config"]).is_err());
    }
}
