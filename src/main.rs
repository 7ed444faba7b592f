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
    let outcome = limen::app::run(cli);
    // Copies of S3 data staged for this command: removed before the process ends.
    limen::remote::clear_staged();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// Resident memory of this process, in bytes.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// With mimalloc (this binary's allocator), freed pages stay with their thread until it
    /// allocates again; `release_idle_memory`, which idle threads call, gives them back. (A
    /// purge delay of 0 would too, but it costs a system call per freed page on the hot path:
    /// /predict fell to 0.87 of the floor in benches/http.sh.)
    #[test]
    fn an_idle_thread_gives_freed_memory_back() {
        let before = rss();
        let big: Vec<u8> = vec![1; 256 << 20];
        std::hint::black_box(&big);
        assert!(rss() > before + (200 << 20), "the pages were touched");
        drop(big);
        limen::budget::release_idle_memory();
        let after = rss().saturating_sub(before) >> 20;
        assert!(after < 32, "{after} MiB still resident");
    }
}
