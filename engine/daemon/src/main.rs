//! flashpointd entry point: load the configuration, then (for now) stop.

use std::process::ExitCode;

use clap::Parser;
use flashpointd::cli::Cli;
use flashpointd::{CpuSet, EXIT_CONFIG, load};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = cli.inputs().and_then(|inputs| load(&inputs, &CpuSet::host()));
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
