//! The invariant checker (`queuegate check`): verifies in the database that nothing the contract
//! forbids has happened (`run`), and that the booking events stream tells exactly what the
//! database holds (`stream`). Fault and concurrency tests end by running both.

use sqlx::MySqlPool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// (name, query returning one row per violation, rendered as a single string column).
const CHECKS: &[(&str, &str)] = &[
    (
        "one live reservation per seat",
        "SELECT CONCAT('schedule ', schedule_id, ' seat ', seat_no, ': ', COUNT(*), ' live')
           FROM reservations WHERE status IN ('held', 'confirmed')
          GROUP BY schedule_id, seat_no HAVING COUNT(*) > 1",
    ),
    (
        "no negative balance",
        "SELECT CONCAT('user ', user_id, ' balance ', balance) FROM wallets WHERE balance < 0",
    ),
    (
        "balance equals ledger sum",
        "SELECT CONCAT('user ', w.user_id, ' balance ', w.balance, ' ledger ', COALESCE(l.total, 0))
           FROM wallets w
           LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM ledger GROUP BY user_id) l
             ON l.user_id = w.user_id
          WHERE w.balance <> COALESCE(l.total, 0)",
    ),
    (
        "every payment has a confirmed reservation",
        "SELECT CONCAT('payment ', p.id, ' reservation ', p.reservation_id, ' is ', r.status)
           FROM payments p JOIN reservations r ON r.id = p.reservation_id
          WHERE r.status <> 'confirmed'",
    ),
    (
        "every confirmed reservation has a payment",
        "SELECT CONCAT('reservation ', r.id) FROM reservations r
           LEFT JOIN payments p ON p.reservation_id = r.id
          WHERE r.status = 'confirmed' AND p.id IS NULL",
    ),
    (
        "every payment is debited once, at the seat price",
        "SELECT CONCAT('payment ', p.id) FROM payments p
           JOIN reservations r ON r.id = p.reservation_id
           LEFT JOIN ledger l ON l.payment_id = p.id
          WHERE l.id IS NULL OR l.amount <> -p.amount OR p.amount <> r.price OR l.user_id <> p.user_id",
    ),
];

pub async fn run(pool: &MySqlPool) -> Result<Vec<Violation>, sqlx::Error> {
    let mut found = Vec::new();
    for (invariant, sql) in CHECKS {
        let rows: Vec<String> = sqlx::query_scalar(*sql).fetch_all(pool).await?;
        found.extend(
            rows.into_iter()
                .map(|detail| Violation { invariant, detail }),
        );
    }
    Ok(found)
}

pub fn invariants() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|(name, _)| *name)
}

// ---------------------------------------------------------------------------------------------
// The booking events stream (`queuegate check` when the queue Redis is reachable).

use crate::outbox::EventType;
use crate::outbox::stream::{Entry, EventStream};
use crate::store_error::StoreError;
use chrono::NaiveDateTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const WELL_FORMED: &str = "every stream entry is a well-formed contract event";
const ONCE: &str = "each event is in the stream once";
const HELD: &str = "one reservation.held per reservation";
const PAID: &str = "one payment.completed per payment";
const CHARGED: &str = "one wallet.charged per charge";
const NO_PHANTOM: &str = "no event without its row (nothing from a rolled-back transaction)";
const LIFECYCLE: &str = "each reservation's events match its status, in commit order";

const STREAM_CHECKS: &[&str] = &[
    WELL_FORMED,
    ONCE,
    HELD,
    PAID,
    CHARGED,
    NO_PHANTOM,
    LIFECYCLE,
];

/// The names of the stream invariants, in the order `queuegate check` prints them.
pub fn stream_invariants() -> impl Iterator<Item = &'static str> {
    STREAM_CHECKS.iter().copied()
}

#[derive(Debug, thiserror::Error)]
pub enum StreamCheckError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("events stream: {0}")]
    Stream(#[from] StoreError),
}

/// What the stream check saw, besides its violations.
#[derive(Debug, Default)]
pub struct StreamReport {
    pub violations: Vec<Violation>,
    /// Entries in the stream.
    pub entries: usize,
    /// Events still in the outbox (written, not yet relayed): expected later, not missing.
    pub pending: usize,
    /// MAXLEN trimmed the stream: rows older than its first entry are checked only for
    /// duplicates and phantoms, not for missing events.
    pub trimmed: bool,
}

/// The database side, read before the stream (so every row's event is either relayed by the
/// time the stream is read, or still pending in the outbox).
struct Snapshot {
    /// Rows created before this have no events (the outbox did not exist yet).
    since: NaiveDateTime,
    reservations: HashMap<u64, (String, NaiveDateTime)>,
    payments: HashMap<u64, NaiveDateTime>,
    /// user -> charge rows' times.
    charges: HashMap<u64, Vec<NaiveDateTime>>,
    /// Outbox rows not yet relayed: (type, user, reservation).
    pending: Vec<(String, u64, Option<u64>)>,
}

async fn snapshot(pool: &MySqlPool) -> Result<Snapshot, sqlx::Error> {
    let since: NaiveDateTime =
        sqlx::query_scalar("SELECT installed_at FROM outbox_relay_lease WHERE id = 1")
            .fetch_one(pool)
            .await?;
    let reservations: Vec<(u64, String, NaiveDateTime)> =
        sqlx::query_as("SELECT id, CAST(status AS CHAR), created_at FROM reservations")
            .fetch_all(pool)
            .await?;
    let payments: Vec<(u64, NaiveDateTime)> =
        sqlx::query_as("SELECT reservation_id, created_at FROM payments")
            .fetch_all(pool)
            .await?;
    let charges: Vec<(u64, NaiveDateTime)> =
        sqlx::query_as("SELECT user_id, created_at FROM ledger WHERE kind = 'charge'")
            .fetch_all(pool)
            .await?;
    let pending: Vec<(String, u64, Option<u64>)> = sqlx::query_as(
        "SELECT CAST(event_type AS CHAR), user_id, reservation_id FROM outbox
          WHERE relayed_at IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut by_user: HashMap<u64, Vec<NaiveDateTime>> = HashMap::new();
    for (user, at) in charges {
        by_user.entry(user).or_default().push(at);
    }
    Ok(Snapshot {
        since,
        reservations: reservations
            .into_iter()
            .map(|(id, status, at)| (id, (status, at)))
            .collect(),
        payments: payments.into_iter().collect(),
        charges: by_user,
        pending,
    })
}

/// The events a reservation in `status` has had, in commit order.
fn lifecycle(status: &str) -> &'static [&'static str] {
    match status {
        "held" => &["reservation.held"],
        "confirmed" => &["reservation.held", "payment.completed"],
        "cancelled" => &["reservation.held", "reservation.cancelled"],
        "expired" => &["reservation.held", "reservation.expired"],
        _ => &[],
    }
}

fn well_formed(e: &Entry) -> bool {
    let Some(kind) = EventType::parse(&e.kind) else {
        return false;
    };
    let has = |f: &str| e.data.get(f).is_some();
    let common = !e.event_id.is_empty() && has("user_id") && has("amount") && has("at");
    match kind {
        EventType::WalletCharged => common,
        _ => {
            common
                && ["reservation_id", "concert_id", "schedule_id", "seat_no"]
                    .iter()
                    .all(|f| has(f))
        }
    }
}

/// Verifies the events stream against the database: exactly one `reservation.held` per
/// reservation, one `payment.completed` per payment, one `wallet.charged` per charge, each
/// event once, none for a row that does not exist (a rolled-back transaction), and each
/// reservation's events in the order its status implies. Events still in the outbox count as
/// coming, not missing. Safe to run under traffic: apparent violations are re-read from the
/// database once before they are reported.
pub async fn stream(
    pool: &MySqlPool,
    events: &EventStream,
) -> Result<StreamReport, StreamCheckError> {
    let db = snapshot(pool).await?;
    let info = events.info().await?;
    let entries = events.all().await?;
    let mut report = StreamReport {
        entries: entries.len(),
        pending: db.pending.len(),
        trimmed: info.trimmed(),
        ..Default::default()
    };
    // Rows written before this are not expected in the stream.
    let mut cutoff = db.since;
    if report.trimmed {
        let first_ms = entries
            .first()
            .and_then(|e| e.id.split('-').next())
            .and_then(|ms| ms.parse::<i64>().ok())
            .unwrap_or(i64::MAX / 2);
        // A minute of slack for the clocks of Redis and the database.
        if let Some(t) = chrono::DateTime::from_timestamp_millis(first_ms + 60_000) {
            cutoff = cutoff.max(t.naive_utc());
        }
    }
    let mut found: Vec<Violation> = Vec::new();
    let mut v =
        |invariant: &'static str, detail: String| found.push(Violation { invariant, detail });

    let mut by_event: HashMap<&str, usize> = HashMap::new();
    let mut by_reservation: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    let mut charged: HashMap<u64, usize> = HashMap::new();
    for e in &entries {
        if !well_formed(e) {
            v(
                WELL_FORMED,
                format!("entry {}: {} {}", e.id, e.kind, e.data),
            );
            continue;
        }
        *by_event.entry(e.event_id.as_str()).or_default() += 1;
        match (e.kind.as_str(), e.reservation_id(), e.user_id()) {
            ("wallet.charged", _, Some(user)) => *charged.entry(user).or_default() += 1,
            (kind, Some(r), _) => by_reservation.entry(r).or_default().push(kind),
            _ => {}
        }
    }
    for (id, n) in &by_event {
        if *n > 1 {
            v(ONCE, format!("event {id} appears {n} times"));
        }
    }
    let mut pending_of: HashMap<u64, Vec<&str>> = HashMap::new();
    let mut pending_charges: HashMap<u64, usize> = HashMap::new();
    for (kind, user, reservation) in &db.pending {
        match reservation {
            Some(r) => pending_of.entry(*r).or_default().push(kind.as_str()),
            None => *pending_charges.entry(*user).or_default() += 1,
        }
    }

    // Reservations and payments, from the rows' side; then phantoms from the stream's side.
    let mut suspects: BTreeSet<u64> = BTreeSet::new();
    let empty: Vec<&str> = Vec::new();
    for (id, (status, created)) in &db.reservations {
        let seen = by_reservation.get(id).unwrap_or(&empty);
        let pending = pending_of.get(id).unwrap_or(&empty);
        let expected = *created >= cutoff;
        let count = |k: &str| seen.iter().filter(|s| **s == k).count();
        let held = count("reservation.held");
        if held > 1 || (expected && held == 0 && !pending.contains(&"reservation.held")) {
            v(HELD, format!("reservation {id}: {held} in the stream"));
        }
        let paid = count("payment.completed");
        let has_payment = db.payments.get(id).is_some_and(|at| *at >= cutoff);
        if paid > 1 || (has_payment && paid == 0 && !pending.contains(&"payment.completed")) {
            v(
                PAID,
                format!("reservation {id}: {paid} payment.completed in the stream"),
            );
        }
        if expected && pending.is_empty() && seen.as_slice() != lifecycle(status) {
            suspects.insert(*id);
        }
    }
    for (id, seen) in &by_reservation {
        match db.reservations.get(id) {
            None => {
                suspects.insert(*id);
            }
            Some(_) if seen.contains(&"payment.completed") && !db.payments.contains_key(id) => {
                suspects.insert(*id);
            }
            Some(_) => {}
        }
    }
    // Charges: events seen (plus pending) against the user's charge rows.
    let mut users: BTreeSet<u64> = db.charges.keys().copied().collect();
    users.extend(charged.keys().copied());
    let mut charge_suspects = Vec::new();
    for user in users {
        let rows = db.charges.get(&user).map_or(&[][..], Vec::as_slice);
        let due = rows.iter().filter(|at| **at >= cutoff).count();
        let got = charged.get(&user).copied().unwrap_or(0)
            + pending_charges.get(&user).copied().unwrap_or(0);
        if got > rows.len() || (!report.trimmed && got < due) {
            charge_suspects.push((user, got));
        }
    }

    // Apparent problems are read again: a row may have been committed (or changed) after the
    // snapshot while its event was relayed before the stream was read.
    for id in suspects {
        let now: Option<(String,)> =
            sqlx::query_as("SELECT CAST(status AS CHAR) FROM reservations WHERE id = ?")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        let paid: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE reservation_id = ?")
                .bind(id)
                .fetch_one(pool)
                .await?;
        let seen = by_reservation.get(&id).unwrap_or(&empty);
        match now {
            None => v(
                NO_PHANTOM,
                format!("reservation {id} does not exist; stream has {seen:?}"),
            ),
            Some(_) if paid == 0 && seen.contains(&"payment.completed") => v(
                NO_PHANTOM,
                format!("reservation {id} has no payment; stream has {seen:?}"),
            ),
            Some((status,)) => {
                let then = db.reservations.get(&id).map(|(s, _)| s.as_str());
                let fits = |s: &str| seen.as_slice() == lifecycle(s);
                if !fits(&status) && !then.is_some_and(fits) {
                    v(
                        LIFECYCLE,
                        format!("reservation {id} is {status}; stream has {seen:?}"),
                    );
                }
            }
        }
    }
    for (user, got) in charge_suspects {
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'charge' AND user_id = ?")
                .bind(user)
                .fetch_one(pool)
                .await?;
        let before = db.charges.get(&user).map_or(0, Vec::len);
        let due = db
            .charges
            .get(&user)
            .map_or(0, |r| r.iter().filter(|at| **at >= cutoff).count())
            + (rows as usize).saturating_sub(before);
        if got > rows as usize || (!report.trimmed && got < due) {
            v(
                CHARGED,
                format!("user {user}: {rows} charges, {got} wallet.charged events"),
            );
        }
    }
    report.violations = found;
    Ok(report)
}
