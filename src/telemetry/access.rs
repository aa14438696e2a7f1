//! The access-log line, written straight into the log buffer when the log is plain lines.
//!
//! Every request that is not a probe writes one, so it is the log's hottest line. Through
//! `tracing` it cost ~3,900 instructions (callgrind, a status poll): the event's dispatch, the
//! registry's lookup of the request span and of its pre-formatted fields, and `fmt`'s machinery
//! for each value. The pipeline already holds everything the line says, so in the default
//! format (plain lines, see `plain`) it writes the very same text itself. Any other format —
//! JSON, colour — goes through `tracing` as before; the pipeline asks `tracing` whether the
//! line is wanted at all, so `RUST_LOG` filters it exactly as it filters the event.

use super::plain::{push_millis, write_timestamp};
use std::cell::RefCell;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Set once the plain-lines format is installed.
static DIRECT: AtomicBool = AtomicBool::new(false);

pub(super) fn enable() {
    DIRECT.store(true, Ordering::Relaxed);
}

/// What one access line says.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub route: &'static str,
    pub elapsed: Duration,
}

/// Writes the access line if the log takes plain lines; `false` leaves it to the caller's
/// `tracing` event (another format is installed).
pub fn write_access_line(s: &AccessLine<'_>) -> bool {
    if !DIRECT.load(Ordering::Relaxed) {
        return false;
    }
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        format_access_line(line, SystemTime::now(), s);
        let _ = super::make_line_writer().write_all(line.as_bytes());
    });
    true
}

/// The line as `tracing`'s event in the plain format would write it, inside the request span:
/// `<time>  INFO request{request_id=… method=… path=…}: served status=… route="…" elapsed_ms=…`.
fn format_access_line(line: &mut String, now: SystemTime, s: &AccessLine<'_>) {
    let _ = write_timestamp(line, now);
    line.push_str("  INFO request{request_id=");
    line.push_str(s.request_id);
    line.push_str(" method=");
    line.push_str(s.method);
    line.push_str(" path=");
    line.push_str(s.path);
    line.push_str("}: served status=");
    line.push_str(itoa::Buffer::new().format(s.status));
    line.push_str(" route=\"");
    // Route labels are fixed identifiers: nothing in them needs escaping.
    line.push_str(s.route);
    line.push_str("\" elapsed_ms=");
    push_millis(line, s.elapsed);
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::plain::{PlainFields, PlainLines};
    use crate::telemetry::{Captured, Millis};

    /// The direct line and `tracing`'s line for the same request, timestamps cut off.
    fn both(s: &AccessLine<'_>) -> (String, String) {
        let sink = Captured::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .fmt_fields(PlainFields)
            .event_format(PlainLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // The pipeline's span and event, as it writes them.
            let span = tracing::info_span!("request", request_id = %s.request_id, method = %s.method, path = %s.path);
            let _e = span.enter();
            let (status, route) = (s.status, s.route);
            tracing::info!(status, route, elapsed_ms = %Millis(s.elapsed), "served");
        });
        let traced = out.text();
        let mut direct = String::new();
        format_access_line(&mut direct, SystemTime::now(), s);
        (traced[27..].to_owned(), direct[27..].to_owned())
    }

    #[test]
    fn the_direct_line_is_the_traced_line() {
        for s in [
            AccessLine {
                request_id: "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                method: "GET",
                path: "/v1/queue/status",
                status: 200,
                route: "queue_status",
                elapsed: Duration::from_micros(271),
            },
            AccessLine {
                request_id: "caller.id:1",
                method: "POST",
                path: "/v1/concerts/7/seats/12/hold",
                status: 409,
                route: "hold",
                elapsed: Duration::from_micros(12_000_005),
            },
        ] {
            let (traced, direct) = both(&s);
            assert_eq!(direct, traced);
            assert!(direct.starts_with("  INFO request{request_id="), "{direct}");
        }
    }
}
