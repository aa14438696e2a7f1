//! Grants this instance confirmed live a moment ago, so that a visitor's burst of requests (a
//! page and its dozens of assets) costs one store check rather than one each.
//!
//! Asking the store on every forward is what made a forward cost a Redis round trip and a
//! script call. Remembering an answer is safe only because an admission cannot end early
//! unheard: the scripts that end one (`revoke.lua`, `leave.lua`, `grant.lua`) announce it in
//! the same atomic step (`queue::ends`), every gateway-mode instance hears it within
//! milliseconds, and `forget` drops the user's grant here. Natural expiry needs no announcement:
//! a grant is never remembered past its access token's `exp`. So the memory holds a grant only
//! while all of these hold:
//! - the announcements can be heard: from the first sign that the subscription broke until it is
//!   renewed, nothing is remembered and every forward asks the store (`hearing`);
//! - no end was announced while the check that confirmed it was in flight: such an answer may
//!   predate the end, so it serves its own request (which the store admitted) and is not kept —
//!   each check holds a ticket, and an announcement voids it;
//! - it is younger than `UPSTREAM_GRANT_CACHE_MS` (1 s by default): the bound on what a notice
//!   lost without any sign of trouble could cost, as the tunnels' periodic recheck is.
//!
//! `UPSTREAM_GRANT_CACHE_MS=0` turns the memory off: every forward asks the store.

use crate::domain::UserId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The memory of one gateway-mode instance's line.
pub struct ConfirmedGrants {
    max_age: Duration,
    state: Mutex<State>,
}

struct State {
    /// Can the announcements be heard right now? Nothing is remembered while not.
    hearing: bool,
    entries: HashMap<UserId, Entry>,
    next_ticket: u64,
    /// The size at which expired entries are swept out (ends that were never announced, such
    /// as natural expiry, leave entries behind).
    sweep_at: usize,
}

enum Entry {
    /// A check of this user's grant is in flight; its answer may be kept if the ticket is
    /// still this one when it arrives.
    Asking { ticket: u64, since: Instant },
    /// The store said the admission `seq` was live; trusted until `until`.
    Live { seq: u64, until: Instant },
}

/// What the memory says about a grant.
#[derive(Debug)]
pub enum Lookup {
    /// Confirmed live a moment ago: forward without asking.
    Live,
    /// Ask the store; hand a live answer back with the ticket (when there is one).
    Ask(Option<Ticket>),
}

/// Entitles one check's live answer to be remembered, unless an end is announced first.
#[derive(Debug)]
pub struct Ticket {
    user: UserId,
    seq: u64,
    ticket: u64,
}

/// Entries below this are never swept (a sweep walks the whole map).
const MIN_SWEEP: usize = 1024;

impl ConfirmedGrants {
    /// A memory that keeps answers for `max_age` (zero: none), deaf until `hearing(true)`.
    pub fn new(max_age: Duration) -> Self {
        ConfirmedGrants {
            max_age,
            state: Mutex::new(State {
                hearing: false,
                entries: HashMap::new(),
                next_ticket: 0,
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Is the admission `seq` of `user` known live at `now`? If not, the ticket for the check.
    pub fn lookup(&self, user: UserId, seq: u64, now: Instant) -> Lookup {
        if self.max_age.is_zero() {
            return Lookup::Ask(None);
        }
        let mut state = self.state();
        if !state.hearing {
            return Lookup::Ask(None);
        }
        if let Some(Entry::Live { seq: s, until }) = state.entries.get(&user)
            && *s == seq
            && *until > now
        {
            return Lookup::Live;
        }
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        state
            .entries
            .insert(user, Entry::Asking { ticket, since: now });
        if state.entries.len() >= state.sweep_at {
            let max_age = self.max_age;
            state.entries.retain(|_, e| match e {
                Entry::Live { until, .. } => *until > now,
                // A check outlives the memory's age only when the store is in trouble.
                Entry::Asking { since, .. } => now.saturating_duration_since(*since) < max_age,
            });
            state.sweep_at = (state.entries.len() * 2).max(MIN_SWEEP);
        }
        Lookup::Ask(Some(Ticket { user, seq, ticket }))
    }

    /// The store said the ticket's grant is live, with `left` until its token expires: kept
    /// for the memory's age or until then, whichever is sooner — unless an end was announced
    /// (or the announcements went unheard) since the ticket was given.
    pub fn confirmed(&self, ticket: Ticket, left: Duration, now: Instant) {
        let mut state = self.state();
        let current = matches!(
            state.entries.get(&ticket.user),
            Some(Entry::Asking { ticket: t, .. }) if *t == ticket.ticket
        );
        if current && state.hearing {
            let until = now + self.max_age.min(left);
            state.entries.insert(
                ticket.user,
                Entry::Live {
                    seq: ticket.seq,
                    until,
                },
            );
        }
    }

    /// An end of `user`'s admission was announced (or made here): ask the store next time, and
    /// void the check in flight.
    pub fn forget(&self, user: UserId) {
        self.state().entries.remove(&user);
    }

    /// Announcements may have been missed (the listener fell behind): forget everything, and
    /// void every check in flight.
    pub fn forget_all(&self) {
        self.state().entries.clear();
    }

    /// Whether the announcements can be heard. Either way everything is forgotten: going deaf,
    /// what is remembered can no longer be trusted; hearing again, what was remembered before
    /// may have missed an end in between.
    pub fn hearing(&self, on: bool) {
        let mut state = self.state();
        state.hearing = on;
        state.entries.clear();
    }

    /// Can the announcements be heard (so that answers are remembered)?
    pub fn is_hearing(&self) -> bool {
        self.state().hearing
    }

    /// Is a live grant of `user` remembered at `now` (whatever its admission)?
    pub fn remembers(&self, user: UserId, now: Instant) -> bool {
        matches!(self.state().entries.get(&user), Some(Entry::Live { until, .. }) if *until > now)
    }

    /// How many entries are held, checks in flight included (the sweep's test).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(1);
    const LONG: Duration = Duration::from_secs(600);

    fn user(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn hearing() -> ConfirmedGrants {
        let m = ConfirmedGrants::new(AGE);
        m.hearing(true);
        m
    }

    fn ticket(m: &ConfirmedGrants, u: u64, seq: u64, now: Instant) -> Ticket {
        match m.lookup(user(u), seq, now) {
            Lookup::Ask(Some(t)) => t,
            other => panic!("expected a ticket, got {other:?}"),
        }
    }

    fn is_live(m: &ConfirmedGrants, u: u64, seq: u64, now: Instant) -> bool {
        matches!(m.lookup(user(u), seq, now), Lookup::Live)
    }

    #[test]
    fn a_confirmed_grant_is_trusted_for_its_age_and_only_for_its_admission() {
        let m = hearing();
        let t0 = Instant::now();
        let t = ticket(&m, 1, 5, t0);
        m.confirmed(t, LONG, t0);
        assert!(is_live(&m, 1, 5, t0 + AGE / 2));
        assert!(!is_live(&m, 1, 4, t0), "another admission's token");
        assert!(!is_live(&m, 2, 5, t0), "another user");
        let m = hearing();
        m.confirmed(ticket(&m, 1, 5, t0), LONG, t0);
        assert!(!is_live(&m, 1, 5, t0 + AGE), "older than the memory's age");
    }

    #[test]
    fn never_past_the_tokens_expiry() {
        let m = hearing();
        let t0 = Instant::now();
        m.confirmed(ticket(&m, 1, 5, t0), Duration::from_millis(100), t0);
        assert!(is_live(&m, 1, 5, t0 + Duration::from_millis(99)));
        assert!(!is_live(&m, 1, 5, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn an_announced_end_forgets_the_grant_and_voids_the_check_in_flight() {
        let m = hearing();
        let t0 = Instant::now();
        m.confirmed(ticket(&m, 1, 5, t0), LONG, t0);
        m.forget(user(1));
        assert!(!is_live(&m, 1, 5, t0));

        // The check read the store before the end; its answer serves its request only.
        let t = ticket(&m, 1, 5, t0);
        m.forget(user(1));
        m.confirmed(t, LONG, t0);
        assert!(!is_live(&m, 1, 5, t0));
        // Another user's end voids nothing of this one's.
        let t = ticket(&m, 1, 5, t0);
        m.forget(user(2));
        m.confirmed(t, LONG, t0);
        assert!(is_live(&m, 1, 5, t0));
    }

    #[test]
    fn of_two_checks_in_flight_only_the_later_answer_is_kept() {
        let m = hearing();
        let t0 = Instant::now();
        let first = ticket(&m, 1, 5, t0);
        let second = ticket(&m, 1, 5, t0);
        m.confirmed(first, LONG, t0);
        assert!(!m.remembers(user(1), t0));
        m.confirmed(second, LONG, t0);
        assert!(m.remembers(user(1), t0));
        assert!(is_live(&m, 1, 5, t0));
    }

    #[test]
    fn nothing_is_remembered_unless_announcements_are_heard() {
        let t0 = Instant::now();
        let deaf = ConfirmedGrants::new(AGE);
        assert!(matches!(deaf.lookup(user(1), 5, t0), Lookup::Ask(None)));

        let m = hearing();
        m.confirmed(ticket(&m, 1, 5, t0), LONG, t0);
        let in_flight = ticket(&m, 2, 5, t0);
        m.hearing(false);
        assert!(!is_live(&m, 1, 5, t0), "forgotten on going deaf");
        assert!(matches!(m.lookup(user(1), 5, t0), Lookup::Ask(None)));
        m.hearing(true);
        m.confirmed(in_flight, LONG, t0);
        assert!(
            !is_live(&m, 2, 5, t0),
            "a check from before the gap is not kept"
        );

        let m = hearing();
        let in_flight = ticket(&m, 1, 5, t0);
        m.forget_all();
        m.confirmed(in_flight, LONG, t0);
        assert!(!is_live(&m, 1, 5, t0));
    }

    #[test]
    fn a_zero_age_remembers_nothing() {
        let m = ConfirmedGrants::new(Duration::ZERO);
        m.hearing(true);
        assert!(matches!(
            m.lookup(user(1), 5, Instant::now()),
            Lookup::Ask(None)
        ));
    }

    #[test]
    fn expired_entries_are_swept_as_the_map_grows() {
        let m = hearing();
        let t0 = Instant::now();
        for u in 1..=MIN_SWEEP as u64 - 1 {
            m.confirmed(ticket(&m, u, 1, t0), LONG, t0);
        }
        assert_eq!(m.len(), MIN_SWEEP - 1);
        // Past every entry's age, the next lookup sweeps them out and keeps only its own check.
        let later = t0 + AGE * 2;
        let t = ticket(&m, 99_999, 1, later);
        assert_eq!(m.len(), 1);
        m.confirmed(t, LONG, later);
        assert!(is_live(&m, 99_999, 1, later));
    }
}
