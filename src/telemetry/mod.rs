//! Logging: human-readable lines by default, JSON with `LOG_FORMAT=json`.
//!
//! Request handling runs inside a span carrying `request_id`, so every line written while
//! serving a request — by us or by a library that logs through `tracing` — names it.
//!
//! Human lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), so a log redirected to a file or a pipe carries no escape codes.
//!
//! Lines are written by a thread of their own: a request appends its access-log line to a
//! shared buffer instead of making a `write` system call on stderr itself, and the thread
//! writes what has gathered in batches (measured in BENCHMARKS.md). Nothing is dropped — when
//! the buffer is full, loggers wait — and what is buffered is written out when the process
//! ends normally (`LogGuard`).

mod access;
mod plain;

pub use access::{AccessLine, write_access_line};
pub use plain::Millis;

use crate::config::LogFormat;
use plain::{PlainFields, PlainLines};
use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use tracing_subscriber::EnvFilter;

/// Bytes that may wait for the writer thread before loggers have to.
const BUFFERED_BYTES: usize = 16 * 1024 * 1024;

/// How long the writer lets lines gather after a write before it looks again. Waking the
/// writer and calling `write` once per line cost a busy gateway ~10 µs per request (measured in
/// BENCHMARKS.md); gathering for a few milliseconds makes it one wake-up and one `write` per
/// few hundred lines, and a line reaches the log at most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Lines on their way to stderr. A line is appended under the lock in one piece (no
/// allocation per line, nothing freed on another thread), the writer takes the whole buffer.
struct Pending {
    bytes: Vec<u8>,
    /// The writer sleeps on `ready` (the log was quiet): the next line must wake it.
    writer_waiting: bool,
    /// `LogGuard` asked the writer to write what is left and stop.
    closing: bool,
    /// The writer thread has ended (or never started): loggers write to stderr themselves.
    writer_gone: bool,
}

struct Log {
    pending: Mutex<Pending>,
    /// Lines arrived (signalled only when the writer waits for them).
    ready: Condvar,
    /// The writer took the buffer: loggers waiting for space may append.
    drained: Condvar,
}

static LOG: OnceLock<Log> = OnceLock::new();
static WRITER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// Flushes the log when dropped (hold it for the life of the process).
pub struct LogGuard;

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(log) = LOG.get() {
            log.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closing = true;
            log.ready.notify_one();
        }
        if let Ok(mut w) = WRITER.lock()
            && let Some(handle) = w.take()
        {
            let _ = handle.join();
        }
    }
}

/// Where one log line goes: the shared buffer (locked from the line's first byte to its end,
/// so lines of different threads never interleave), or stderr before `init`.
pub struct LineWriter(Option<MutexGuard<'static, Pending>>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(log) = LOG.get() else {
            return std::io::stderr().write(buf);
        };
        let p = match self.0.as_mut() {
            Some(p) => p,
            None => {
                // A poisoned buffer is still a buffer of whole lines: keep using it.
                let mut p = log.pending.lock().unwrap_or_else(PoisonError::into_inner);
                // Full: wait for the writer rather than lose a line.
                while p.bytes.len() >= BUFFERED_BYTES && !p.closing && !p.writer_gone {
                    p = log.drained.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                self.0.insert(p)
            }
        };
        if p.writer_gone {
            return std::io::stderr().write(buf);
        }
        p.bytes.extend_from_slice(buf);
        if p.writer_waiting {
            p.writer_waiting = false;
            log.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn make_line_writer() -> LineWriter {
    LineWriter(None)
}

/// Writes buffered lines to stderr in batches: it sleeps on `ready` while the log is quiet,
/// and while lines keep coming it takes and writes what has gathered every `GATHER`.
fn write_lines(log: &'static Log) {
    let _gone = WriterGone(log);
    let mut out = std::io::stderr();
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let (batch, closing) = {
            let mut p = log.pending.lock().unwrap_or_else(PoisonError::into_inner);
            while p.bytes.is_empty() && !p.closing {
                p.writer_waiting = true;
                p = log.ready.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            p.writer_waiting = false;
            (std::mem::replace(&mut p.bytes, spare), p.closing)
        };
        log.drained.notify_all();
        let _ = out.write_all(&batch);
        spare = batch;
        spare.clear();
        if closing {
            return;
        }
        std::thread::sleep(GATHER);
    }
}

/// However the writer ends (asked to, or by a panic), what is still buffered goes out and
/// loggers — including any waiting for space — write to stderr themselves from then on, so
/// a request never waits for a writer that is gone.
struct WriterGone(&'static Log);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut p = self
            .0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.writer_gone = true;
        let mut err = std::io::stderr();
        let _ = err.write_all(&p.bytes);
        let _ = err.flush();
        p.bytes.clear();
        drop(p);
        self.0.drained.notify_all();
    }
}

/// Installs the global subscriber once; later calls (tests building several apps) are no-ops.
/// Keep the guard until the process ends, so queued lines are written out.
pub fn init(format: LogFormat) -> LogGuard {
    if LOG.get().is_none() {
        let log = Log {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(64 * 1024),
                writer_waiting: false,
                closing: false,
                writer_gone: true,
            }),
            ready: Condvar::new(),
            drained: Condvar::new(),
        };
        if LOG.set(log).is_ok()
            && let Some(log) = LOG.get()
        {
            // Until the writer runs (and if it cannot be started) loggers write to stderr.
            let set_gone = |gone: bool| {
                log.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .writer_gone = gone;
            };
            set_gone(false);
            match std::thread::Builder::new()
                .name("queuegate-log".into())
                .spawn(move || write_lines(log))
            {
                Ok(handle) => {
                    if let Ok(mut w) = WRITER.lock() {
                        *w = Some(handle);
                    }
                }
                Err(_) => set_gone(true),
            }
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
        LogFormat::Human if colour => builder.try_init(),
        LogFormat::Human => {
            let installed = builder
                .fmt_fields(PlainFields)
                .event_format(PlainLines)
                .try_init();
            if installed.is_ok() {
                access::enable();
            }
            installed
        }
    };
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and not when `NO_COLOR`
/// is set to a non-empty value.
pub fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Where the tests of the line formats let a subscriber write: keeps every byte.
#[cfg(test)]
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
