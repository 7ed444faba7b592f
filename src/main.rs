//! The `limen` binary: parse the command line, start logging, run the subcommand, and turn the
//! outcome into an exit code (0 ok, 1 a validation gate said no, 2 anything else went wrong).

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen small objects (hyper,
/// axum, the JSON answer), and glibc's allocator cost ~7,000 instructions per request in
/// callgrind; see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match limen::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // A bad value (an invalid model name, a version that is not a number) is one line, like
        // every other error limen reports; clap's other messages (help, usage) print as they are.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid value"));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    limen::telemetry::init(cli.log_format, &cli.log_filter);
    match limen::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
