//! The human log line without colour — what a service manager or a file gets — written with
//! as little formatting machinery as possible, because every request writes one.
//!
//! The line is the same as `tracing_subscriber`'s default (`Full`) format without ANSI codes:
//! `2026-11-29T14:59:02.077924Z  INFO request{request_id=… method=GET path=/x}: served status=200`.
//! What it does not do per line: format a date (the part up to the second is kept per thread
//! and rebuilt when the second changes), or wrap each part in a colour style that paints
//! nothing. Measured in BENCHMARKS.md (the access log's cost per request).

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub struct PlainLines;

impl<S, N> FormatEvent<S, N> for PlainLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str(level_label(event.metadata().level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// Fields as `tracing_subscriber`'s default writes them without colour — `message` bare, others
/// `name=value`, strings quoted and escaped as `{:?}` does, separated by spaces — without its
/// per-field styling and padding machinery, and plain strings copied as they are.
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        thread_local! {
            /// The fields of one span or event, gathered before they are written in one piece.
            static GATHERED: RefCell<String> = const { RefCell::new(String::new()) };
        }
        // Gathered first, then written once: a span's fields go into a fresh `String`, which
        // would otherwise grow (and reallocate) with every name and value — 4 or 5 times for a
        // request's span, a measurable share of every request. Should this ever run again
        // while the buffer is taken (`tracing` drops what is logged from inside a subscriber,
        // so it is not expected), it writes directly instead of panicking.
        GATHERED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                let mut v = FieldWriter {
                    writer: &mut *buffer,
                    first: true,
                    result: Ok(()),
                };
                fields.record(&mut v);
                let result = v.result.and_then(|()| writer.write_str(&buffer));
                if buffer.capacity() > 16 * 1024 {
                    // One huge field does not keep its memory on this thread for good.
                    *buffer = String::new();
                }
                result
            }
            Err(_) => {
                let mut v = FieldWriter {
                    writer: &mut writer,
                    first: true,
                    result: Ok(()),
                };
                fields.record(&mut v);
                v.result
            }
        })
    }
}

struct FieldWriter<W> {
    writer: W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> FieldWriter<W> {
    /// Writes the separator and `name=` (nothing for the message); false for a field the
    /// default format leaves out (`log.*`, the `log` crate's metadata).
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if self.result.is_ok() && !self.first {
            self.result = self.writer.write_char(' ');
        }
        self.first = false;
        if self.result.is_ok() && name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .writer
                .write_str(name)
                .and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }
}

impl<W: fmt::Write> Visit for FieldWriter<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            self.result = self.writer.write_str(value);
        } else if value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            // Nothing `{:?}` would escape.
            self.result = self
                .writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'));
        } else {
            self.result = write!(self.writer, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// The level between the timestamp and the spans, padded as the default format pads it.
fn level_label(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-29T14:59:02.077924Z`.
pub(super) fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        /// The second last formatted on this thread and its text up to the '.'.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let text = chrono::DateTime::from_timestamp(secs as i64, 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
            *cached = (secs, text);
        }
        w.write_str(&cached.1)
    })?;
    let micros = since.subsec_micros();
    let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // ASCII by construction.
    w.write_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"))
}

/// What `Millis` displays, appended without `fmt`'s machinery (the access line's).
pub(super) fn push_millis(out: &mut String, d: std::time::Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    out.push_str(itoa::Buffer::new().format(micros / 1000));
    let frac = micros % 1000;
    out.push('.');
    for digit in [frac / 100, frac / 10 % 10, frac % 10] {
        out.push(char::from(b'0' + digit as u8));
    }
}

/// A duration in milliseconds with three decimals (`0.271`), written with integer arithmetic
/// (float formatting was a measurable share of each access-log line).
pub struct Millis(pub std::time::Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut s = String::new();
        let t = UNIX_EPOCH + Duration::from_micros(1_795_963_742_077_924);
        write_timestamp(&mut s, t).unwrap();
        assert_eq!(s, "2026-11-29T14:49:02.077924Z");
        // The cached second is reused, and replaced when the second changes.
        s.clear();
        write_timestamp(&mut s, t + Duration::from_micros(5)).unwrap();
        assert_eq!(s, "2026-11-29T14:49:02.077929Z");
        s.clear();
        write_timestamp(&mut s, t + Duration::from_secs(61)).unwrap();
        assert_eq!(s, "2026-11-29T14:50:03.077924Z");
        s.clear();
        write_timestamp(&mut s, UNIX_EPOCH + Duration::from_micros(7)).unwrap();
        assert_eq!(s, "1970-01-01T00:00:00.000007Z");
    }

    #[test]
    fn millis_have_three_decimals() {
        assert_eq!(Millis(Duration::from_micros(271)).to_string(), "0.271");
        assert_eq!(Millis(Duration::from_micros(1_911)).to_string(), "1.911");
        assert_eq!(
            Millis(Duration::from_micros(12_000_005)).to_string(),
            "12000.005"
        );
        assert_eq!(Millis(Duration::ZERO).to_string(), "0.000");
        for micros in [0, 7, 271, 1_911, 999_999, 12_000_005, u64::MAX / 3] {
            let d = Duration::from_micros(micros);
            let mut pushed = String::new();
            push_millis(&mut pushed, d);
            assert_eq!(pushed, Millis(d).to_string());
        }
    }

    #[test]
    fn lines_match_the_default_format_without_colour() {
        use crate::telemetry::Captured as Sink;
        let run = |plain: bool| {
            let sink = Sink::default();
            let out = sink.clone();
            let builder = tracing_subscriber::fmt()
                .with_target(false)
                .with_ansi(false)
                .with_writer(move || sink.clone());
            let odd = "tab\there \"quoted\" \\ é";
            let emit = || {
                let span = tracing::info_span!("request", request_id = %"abc", method = %"GET");
                let _e = span.enter();
                let inner = tracing::info_span!("inner");
                let _i = inner.enter();
                tracing::warn!(status = 200u16, route = "status", elapsed_ms = %Millis(std::time::Duration::from_micros(1500)), "served");
                tracing::info!(odd, negative = -3i64, yes = true, list = ?[1, 2], r#type = "t", "a \"message\" {}", 7);
                tracing::error!("only a message");
                // A value whose `Debug` logs while its line is being written: `tracing` drops
                // the nested event (no dispatch inside the subscriber), and the outer line must
                // come out whole, in both formats.
                struct Loud;
                impl fmt::Debug for Loud {
                    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        tracing::info!(nested = "yes", "inside");
                        f.write_str("loud")
                    }
                }
                tracing::info!(value = ?Loud, "outer");
                // A span field recorded after the span opened is appended to its fields.
                let later = tracing::info_span!("later", id = tracing::field::Empty, n = 1u64);
                later.record("id", "x");
                let _l = later.enter();
                tracing::info!("in later");
            };
            if plain {
                tracing::subscriber::with_default(
                    builder
                        .fmt_fields(PlainFields)
                        .event_format(PlainLines)
                        .finish(),
                    emit,
                );
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
            let text = out.text();
            // Drop the timestamps (they differ); check their shape separately.
            text.lines()
                .map(|line| {
                    let (ts, rest) = line.split_at(27);
                    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{line}");
                    rest.to_owned()
                })
                .collect::<Vec<_>>()
        };
        let plain = run(true);
        assert_eq!(plain, run(false));
        assert_eq!(
            plain[0],
            "  WARN request{request_id=abc method=GET}:inner: served status=200 route=\"status\" elapsed_ms=1.500"
        );
        assert_eq!(plain.len(), 5);
        assert_eq!(
            plain[3],
            "  INFO request{request_id=abc method=GET}:inner: outer value=loud"
        );
        assert_eq!(
            plain[4],
            "  INFO request{request_id=abc method=GET}:inner:later{n=1 id=\"x\"}: in later"
        );
    }
}
