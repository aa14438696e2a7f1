//! Test-only failpoints: crash the process at a named point so fault tests can prove what
//! survives a crash exactly there.
//!
//! A failpoint fires only when the environment variable `QG_FAILPOINT` names it when the
//! process starts (read once). It is for tests; no deployment sets it, and unset (the normal
//! case) every `hit` is a no-op that costs one load of a cached value.
//!
//! Known points:
//! - `after_payment_commit`: the payment transaction committed, nothing after it ran (no seat
//!   board update, no immediate access revocation) — the window the outbox relay covers.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process (no unwinding, no destructors, no flushed buffers: as close to
/// `kill -9` as a process can do to itself) if `QG_FAILPOINT` names `point`.
pub fn hit(point: &str) {
    let armed = ARMED.get_or_init(|| {
        std::env::var("QG_FAILPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    if armed.as_deref() == Some(point) {
        eprintln!("failpoint {point}: aborting (QG_FAILPOINT is a test-only setting)");
        std::process::abort();
    }
}
