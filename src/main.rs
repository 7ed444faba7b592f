//! The `limen` binary: parse the command line, start logging, run the subcommand, and turn the
//! outcome into an exit code (0 ok, 1 a validation gate said no, 2 anything else went wrong).

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen small objects (hyper,
/// axum, the JSON answer), and glibc's allocator cost ~7,000 instructions per request in
/// callgrind; see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: the 16th option of `mi_option_t` in mimalloc 2's
/// `mimalloc.h` (libmimalloc-sys names no constant for it; the test below checks the version).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Freed memory goes back to the OS when it is freed, not 10 ms later and only when the thread
/// that owns it allocates again: a worker that goes idle after a large batch would otherwise keep
/// its pages, and RSS would not come back down after load (measured by benches/memory.sh: with
/// mimalloc's default, 96 MiB of budget peaked at 215 MiB of RSS; with this, under 128 MiB).
fn return_freed_memory_promptly() {
    // SAFETY: sets one of mimalloc's documented options to a documented value (0: purge at
    // once); no pointer is involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() -> ExitCode {
    return_freed_memory_promptly();
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_purge_option_is_the_one_this_mimalloc_has() {
        // SAFETY: plain getters of mimalloc's version and options.
        let (version, delay) = unsafe {
            return_freed_memory_promptly();
            (
                libmimalloc_sys::mi_version(),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        // Option 15 is `mi_option_purge_delay` in mimalloc 2 and 3 alike.
        assert!(
            (2..=3).contains(&(version / 10_000)),
            "mimalloc {version}: check MI_OPTION_PURGE_DELAY against its mimalloc.h"
        );
        assert_eq!(delay, 0);
    }

    #[test]
    fn freed_memory_leaves_the_process() {
        return_freed_memory_promptly();
        let before = rss();
        let big: Vec<u8> = vec![1; 256 << 20];
        std::hint::black_box(&big);
        assert!(rss() > before + (200 << 20), "the pages were touched");
        drop(big);
        // Freed at once: no wait.
        let after = rss().saturating_sub(before) >> 20;
        assert!(after < 32, "{after} MiB still resident");
    }
}
