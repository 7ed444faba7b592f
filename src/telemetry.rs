//! Logging setup: `tracing` events to stderr, human-readable or JSON lines (CloudWatch).
//!
//! Stdout belongs to command output (a pipeline reads the version id from it), so logs never go
//! there.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. `filter` uses tracing's `EnvFilter` syntax; an invalid one
/// falls back to `info` with a warning rather than failing the command.
pub fn init(format: LogFormat, filter: &str) {
    let (env_filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_ok() {
        if let Some(e) = bad_filter {
            tracing::warn!("invalid log filter {filter:?} ({e}); using \"info\"");
        }
    }
}
