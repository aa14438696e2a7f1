//! Logging: human-readable lines by default, JSON with `LOG_FORMAT=json`.
//!
//! Request handling runs inside a span carrying `request_id`, so every line written while
//! serving a request — by us or by a library that logs through `tracing` — names it.
//!
//! Human lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), so a log redirected to a file or a pipe carries no escape codes.
//!
//! Lines are written by a thread of their own: a request hands its access-log line over a
//! channel instead of making a `write` system call on stderr itself, and the thread writes
//! what has gathered in batches (measured in BENCHMARKS.md). Nothing is dropped — when the
//! channel is full, loggers wait — and what is queued is written out when the process ends
//! normally (`LogGuard`).

use crate::config::LogFormat;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::EnvFilter;

/// Lines that may wait for the writer thread before loggers have to.
const QUEUED_LINES: usize = 65_536;

static PIPE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();
static WRITER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// Flushes the log when dropped (hold it for the life of the process).
pub struct LogGuard;

impl Drop for LogGuard {
    fn drop(&mut self) {
        // Tell the writer to finish: an empty line is the end marker.
        if let Some(tx) = PIPE.get() {
            let _ = tx.send(Vec::new());
        }
        if let Ok(mut w) = WRITER.lock()
            && let Some(handle) = w.take()
        {
            let _ = handle.join();
        }
    }
}

/// One log line being formatted; handed to the writer thread when dropped.
pub struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        if line.is_empty() {
            return;
        }
        match PIPE.get() {
            Some(tx) => match tx.try_send(line) {
                Ok(()) => {}
                // Full: wait for the writer rather than lose a line.
                Err(TrySendError::Full(line)) => {
                    let _ = tx.send(line);
                }
                Err(TrySendError::Disconnected(line)) => {
                    let _ = std::io::stderr().write_all(&line);
                }
            },
            None => {
                let _ = std::io::stderr().write_all(&line);
            }
        }
    }
}

fn make_line_writer() -> LineWriter {
    LineWriter(Vec::with_capacity(256))
}

/// How long the writer lets lines gather after a write before it looks again. Waking the
/// writer and calling `write` once per line cost a busy gateway ~10 µs per request (measured in
/// BENCHMARKS.md); gathering for a few milliseconds makes it one wake-up and one `write` per
/// few hundred lines, and a line reaches the log at most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Writes queued lines to stderr in batches: it sleeps on the channel while the log is quiet,
/// and while lines keep coming it writes what has gathered every `GATHER`.
fn write_lines(rx: Receiver<Vec<u8>>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    // Blocks only while the log is quiet; a sender wakes a blocked receiver, never a sleeping one.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next.take() {
            if line.is_empty() {
                let _ = out.flush();
                return;
            }
            let _ = out.write_all(&line);
            loop {
                match rx.try_recv() {
                    Ok(more) if more.is_empty() => {
                        let _ = out.flush();
                        return;
                    }
                    Ok(more) => {
                        let _ = out.write_all(&more);
                    }
                    Err(_) => break,
                }
            }
            let _ = out.flush();
            std::thread::sleep(GATHER);
            next = rx.try_recv().ok();
        }
    }
    let _ = out.flush();
}

/// Installs the global subscriber once; later calls (tests building several apps) are no-ops.
/// Keep the guard until the process ends, so queued lines are written out.
pub fn init(format: LogFormat) -> LogGuard {
    if PIPE.get().is_none() {
        let (tx, rx) = sync_channel(QUEUED_LINES);
        if PIPE.set(tx).is_ok()
            && let Ok(handle) = std::thread::Builder::new()
                .name("queuegate-log".into())
                .spawn(move || write_lines(rx))
            && let Ok(mut w) = WRITER.lock()
        {
            *w = Some(handle);
        }
    }
    install(format);
    LogGuard
}

fn install(format: LogFormat) {
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
        .with_writer(make_line_writer);
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
