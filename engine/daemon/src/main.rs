//! flashpointd entry point: load the configuration, then run until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use flashpointd::cli::Cli;
use flashpointd::{CpuSet, EXIT_CONFIG, load};

/// mimalloc: the shards allocate only at start-up, but the admin side, the journal and
/// the result buffers do; mimalloc keeps those off a global lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // Keys valid one by one can still be refused together by the engine (e.g.
    // window.bids_max above window.records_max): that is a configuration error too.
    if let Err(e) = loaded.settings.shard_config().validate() {
        eprintln!("flashpointd: invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &loaded.warnings {
        eprintln!("flashpointd: warning: {warning}");
    }
    if cli.check_config {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    if cli.print_config {
        print!("{}", loaded.to_toml());
        return ExitCode::SUCCESS;
    }
    eprint!("flashpointd: core map:\n{}", loaded.settings.core_map);
    match flashpointd::run::run(&loaded.settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashpointd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
