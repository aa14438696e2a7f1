//! Logging: human-readable lines by default, JSON with `LOG_FORMAT=json`.
//!
//! Request handling runs inside a span carrying `request_id`, so every line written while
//! serving a request — by us or by a library that logs through `tracing` — names it.
//!
//! Human lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), so a log redirected to a file or a pipe carries no escape codes.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests building several apps) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,fred=warn,hyper=warn,tokio_cron_scheduler=warn")
    });
    let colour = colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and not when `NO_COLOR`
/// is set to a non-empty value.
pub fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(
            !colour_wanted(false, None),
            "a file or a pipe gets plain text"
        );
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(colour_wanted(true, Some(OsStr::new(""))));
    }
}
