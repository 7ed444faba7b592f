//! The `limen` binary: parse the command line, start logging, run the subcommand, and turn the
//! outcome into an exit code (0 ok, 1 a validation gate said no, 2 anything else went wrong).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen small objects (hyper,
/// axum, the JSON answer), and glibc's allocator cost ~7,000 instructions per request in
/// callgrind; see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = limen::cli::Cli::parse();
    limen::telemetry::init(cli.log_format, &cli.log);
    match limen::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
