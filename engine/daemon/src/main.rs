//! flashpointd entry point: load the configuration, then (for now) stop.

use std::process::ExitCode;

use clap::Parser;
use flashpointd::cli::Cli;
use flashpointd::{CpuSet, EXIT_CONFIG, Inputs, load};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only FPN_* variables are configuration; a non-UTF-8 value is passed on lossily and then
    // fails validation with its key named.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("FPN_").then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect();
    let loaded = Inputs::gather(cli.config.clone(), env, cli.flags()).and_then(|i| load(&i, &CpuSet::host()));
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("flashpointd: {errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("flashpointd: warning: {warning}");
    }
    if cli.check_config {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    print!("{}", loaded.to_toml());
    if cli.print_config {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "flashpointd: the configuration is valid, but the runtime is not wired into this build yet; exiting"
    );
    ExitCode::from(1)
}
