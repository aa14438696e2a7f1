//! Every operation on queue state, each one atomic Lua script call (one round trip).

use super::keys::{ConcertKeys, concerts_key};
use crate::domain::{ConcertId, UserId};
use crate::error::ApiError;
use crate::redis::Script;
use crate::tokens::AccessToken;
use fred::prelude::*;

/// The scripts in `lua/`, compiled in.
pub struct Scripts {
    check_access: Script,
    revoke: Script,
    grant: Script,
    join: Script,
    status: Script,
    status_many: Script,
    leave: Script,
    tick: Script,
    figures: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            check_access: Script::new("check_access", include_str!("../../lua/check_access.lua")),
            revoke: Script::new("revoke", include_str!("../../lua/revoke.lua")),
            grant: Script::new("grant", include_str!("../../lua/grant.lua")),
            join: Script::new("join", include_str!("../../lua/join.lua")),
            status: Script::new("status", include_str!("../../lua/status.lua")),
            status_many: Script::new("status_many", include_str!("../../lua/status_many.lua")),
            leave: Script::new("leave", include_str!("../../lua/leave.lua")),
            tick: Script::new("tick", include_str!("../../lua/tick.lua")),
            figures: Script::new("figures", include_str!("../../lua/figures.lua")),
        }
    }

    fn all(&self) -> [&Script; 9] {
        [
            &self.check_access,
            &self.revoke,
            &self.grant,
            &self.join,
            &self.status,
            &self.status_many,
            &self.leave,
            &self.tick,
            &self.figures,
        ]
    }
}

/// The outcome of joining a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    pub seq: u64,
    pub epoch: String,
    pub how: JoinKind,
    pub place: Place,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Existing,
    New,
    Restored,
}

impl JoinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinKind::Existing => "existing",
            JoinKind::New => "new",
            JoinKind::Restored => "restored",
        }
    }
}

/// Where a place stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// Waiting; `position` 1 is next in.
    Waiting { position: u64 },
    /// Admitted until `ends_ms` (Redis clock, ms since the epoch).
    Admitted { ends_ms: u64 },
    /// Left, idle too long, paid, or admission over.
    Gone,
}

/// What the line's speed is known to be: the measured admission rate (users/s, a moving
/// average over ticks that left people waiting) and the concert's overrides, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    pub measured_rate: Option<f64>,
    pub admit_per_tick: Option<u64>,
    pub tick_ms: Option<u64>,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickReport {
    pub ran: bool,
    pub admitted_now: u64,
    pub expired_now: u64,
    pub idle_now: u64,
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_total: u64,
    pub next_due_ms: u64,
    pub tick_ms: u64,
    pub max_active: u64,
    /// Measured admissions per second (moving average); `None` before any measurement.
    pub rate: Option<f64>,
    pub admit_per_tick: u64,
}

/// Per-concert admission settings (overrides; `None` = the instance default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub admit_per_tick: Option<u64>,
    pub tick_ms: Option<u64>,
    pub max_active: Option<u64>,
    pub access_ttl_secs: Option<u64>,
}

/// A concert's live figures and effective settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_total: u64,
    pub settings: SettingsPatch,
    pub rate: f64,
}

/// How often an instance re-adds a concert it serves to the timer's set.
const REREGISTER: std::time::Duration = std::time::Duration::from_secs(1);

pub struct QueueStore {
    pool: Pool,
    prefix: String,
    scripts: Scripts,
    /// Concerts this instance already added to the timer's set (saves a round trip per join).
    registered: std::sync::Mutex<std::collections::HashMap<ConcertId, std::time::Instant>>,
    /// Each concert's pace as of this instance's last tick call, for ETAs without a round trip.
    paces: std::sync::RwLock<std::collections::HashMap<ConcertId, Pace>>,
}

fn keys<const N: usize>(k: [&String; N]) -> Vec<Key> {
    k.into_iter().map(|s| Key::from(s.as_str())).collect()
}

fn args<const N: usize>(a: [Value; N]) -> Vec<Value> {
    a.into_iter().collect()
}

/// Redis integers are signed; our ids and counters stay far below i64::MAX.
fn int(n: u64) -> Value {
    Value::Integer(n.min(i64::MAX as u64) as i64)
}

impl QueueStore {
    pub fn new(pool: Pool, prefix: String) -> Self {
        QueueStore {
            pool,
            prefix,
            scripts: Scripts::new(),
            registered: Default::default(),
            paces: Default::default(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn keys(&self, concert: ConcertId) -> ConcertKeys {
        ConcertKeys::new(&self.prefix, concert)
    }

    /// SCRIPT LOAD everything; called at start so the first requests skip the NOSCRIPT detour.
    pub async fn load_scripts(&self) -> Result<(), ApiError> {
        for s in self.scripts.all() {
            s.load(self.pool.next_connected()).await?;
        }
        Ok(())
    }

    /// Is the admission an access token names still live? (Not revoked, not expired.)
    pub async fn check_access(&self, t: &AccessToken) -> Result<bool, ApiError> {
        let k = self.keys(t.concert_id);
        let live: i64 = self
            .scripts
            .check_access
            .run(
                self.pool.next_connected(),
                keys([&k.admitted, &k.adm_seq]),
                args([int(t.user_id.get()), int(t.seq)]),
            )
            .await?;
        Ok(live == 1)
    }

    /// Ends the user's admission (only the one with `seq`, if given) and removes them from the
    /// line. Returns whether an admission was ended.
    pub async fn revoke(
        &self,
        concert: ConcertId,
        user: UserId,
        seq: Option<u64>,
    ) -> Result<bool, ApiError> {
        let k = self.keys(concert);
        let seq: Value = match seq {
            Some(s) => int(s),
            None => "*".into(),
        };
        let ended: i64 = self
            .scripts
            .revoke
            .run(
                self.pool.next_connected(),
                keys([&k.admitted, &k.adm_seq, &k.waiting, &k.seen, &k.stats]),
                args([int(user.get()), seq]),
            )
            .await?;
        Ok(ended == 1)
    }

    /// Admits one user immediately, outside the line (operators and tests). Returns the access
    /// grant it created.
    pub async fn grant(
        &self,
        concert: ConcertId,
        user: UserId,
        ttl_secs: u64,
    ) -> Result<AccessToken, ApiError> {
        let k = self.keys(concert);
        let (seq, ends_ms): (u64, u64) = self
            .scripts
            .grant
            .run(
                self.pool.next_connected(),
                keys([
                    &k.admitted,
                    &k.adm_seq,
                    &k.seq,
                    &k.waiting,
                    &k.seen,
                    &k.stats,
                ]),
                args([int(user.get()), int(ttl_secs.saturating_mul(1000))]),
            )
            .await?;
        self.register_concert(concert).await?;
        Ok(AccessToken {
            user_id: user,
            concert_id: concert,
            seq,
            exp: ends_ms / 1000,
        })
    }

    /// Takes a place in the line (or returns the one the user has). `restore` is the
    /// (seq, epoch) of a queue token the caller still holds.
    pub async fn join(
        &self,
        concert: ConcertId,
        user: UserId,
        restore: Option<(u64, &str)>,
    ) -> Result<Joined, ApiError> {
        let k = self.keys(concert);
        let fresh_epoch = uuid::Uuid::new_v4().simple().to_string();
        let (restore_seq, restore_epoch) = restore.unwrap_or((0, ""));
        let (state, seq, position, epoch, how, ends): (String, u64, u64, String, u8, u64) = self
            .scripts
            .join
            .run(
                self.pool.next_connected(),
                keys([
                    &k.seq,
                    &k.epoch,
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                ]),
                args([
                    int(user.get()),
                    fresh_epoch.into(),
                    int(restore_seq),
                    restore_epoch.into(),
                ]),
            )
            .await?;
        let how = match how {
            1 => JoinKind::New,
            2 => JoinKind::Restored,
            _ => JoinKind::Existing,
        };
        let place = if state == "admitted" {
            Place::Admitted { ends_ms: ends }
        } else {
            Place::Waiting { position }
        };
        Ok(Joined {
            seq,
            epoch,
            how,
            place,
        })
    }

    /// Where the place named by (user, seq) stands; touches the user's last-seen time.
    pub async fn status(
        &self,
        concert: ConcertId,
        user: UserId,
        seq: u64,
        idle_secs: u64,
    ) -> Result<Place, ApiError> {
        let k = self.keys(concert);
        let reply: Vec<Value> = self
            .scripts
            .status
            .run(
                self.pool.next_connected(),
                keys([&k.waiting, &k.seen, &k.admitted, &k.adm_seq, &k.stats]),
                args([int(user.get()), int(seq), int(idle_secs)]),
            )
            .await?;
        Ok(parse_place(&reply))
    }

    /// Statuses of many places of one concert in one call: entry i answers `places[i]`.
    pub async fn status_many(
        &self,
        concert: ConcertId,
        places: &[(UserId, u64)],
    ) -> Result<(f64, Vec<i64>), ApiError> {
        let k = self.keys(concert);
        let mut argv = Vec::with_capacity(places.len() * 2);
        for (user, seq) in places {
            argv.push(int(user.get()));
            argv.push(int(*seq));
        }
        let reply: Vec<Value> = self
            .scripts
            .status_many
            .run(
                self.pool.next_connected(),
                keys([&k.waiting, &k.seen, &k.admitted, &k.adm_seq, &k.stats]),
                argv,
            )
            .await?;
        let rate = reply.first().map(value_f64).unwrap_or(0.0);
        Ok((
            rate,
            reply
                .iter()
                .skip(1)
                .map(|v| v.as_i64().unwrap_or(0))
                .collect(),
        ))
    }

    /// Frees the place named by (user, seq). Returns whether there was one.
    pub async fn leave(
        &self,
        concert: ConcertId,
        user: UserId,
        seq: u64,
    ) -> Result<bool, ApiError> {
        let k = self.keys(concert);
        let freed: i64 = self
            .scripts
            .leave
            .run(
                self.pool.next_connected(),
                keys([&k.waiting, &k.seen, &k.admitted, &k.adm_seq, &k.stats]),
                args([int(user.get()), int(seq)]),
            )
            .await?;
        Ok(freed == 1)
    }

    /// The concert's pace as last seen by this instance's timer (default before its first tick).
    pub fn pace(&self, concert: ConcertId) -> Pace {
        self.paces
            .read()
            .ok()
            .and_then(|p| p.get(&concert).copied())
            .unwrap_or_default()
    }

    /// One admission tick for a concert (a no-op unless this tick period is still unclaimed).
    pub async fn tick(
        &self,
        concert: ConcertId,
        d: &crate::config::QueueDefaults,
    ) -> Result<TickReport, ApiError> {
        let k = self.keys(concert);
        let r: Vec<i64> = self
            .scripts
            .tick
            .run(
                self.pool.next_connected(),
                keys([
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                    &k.settings,
                ]),
                args([
                    int(d.admit_per_tick),
                    int(d.tick_ms),
                    int(d.max_active),
                    int(d.access_ttl_secs),
                    int(d.idle_secs),
                ]),
            )
            .await?;
        let at = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        let report = TickReport {
            ran: at(0) == 1,
            admitted_now: at(1),
            expired_now: at(2),
            idle_now: at(3),
            waiting: at(4),
            admitted: at(5),
            admitted_total: at(6),
            next_due_ms: at(7),
            tick_ms: at(8),
            max_active: at(9),
            rate: r
                .get(10)
                .map(|milli| *milli as f64 / 1000.0)
                .filter(|r| *r >= 0.0),
            admit_per_tick: at(11),
        };
        if let Ok(mut paces) = self.paces.write() {
            paces.insert(
                concert,
                Pace {
                    measured_rate: report.rate,
                    admit_per_tick: Some(report.admit_per_tick),
                    tick_ms: Some(report.tick_ms),
                },
            );
        }
        Ok(report)
    }

    /// Live figures and the concert's overrides.
    pub async fn figures(&self, concert: ConcertId) -> Result<Figures, ApiError> {
        let k = self.keys(concert);
        let r: Vec<Value> = self
            .scripts
            .figures
            .run(
                self.pool.next_connected(),
                keys([&k.waiting, &k.admitted, &k.stats, &k.settings]),
                Vec::new(),
            )
            .await?;
        let opt = |i: usize| r.get(i).and_then(value_u64);
        Ok(Figures {
            waiting: opt(0).unwrap_or(0),
            admitted: opt(1).unwrap_or(0),
            admitted_total: opt(2).unwrap_or(0),
            settings: SettingsPatch {
                admit_per_tick: opt(3),
                tick_ms: opt(4),
                max_active: opt(5),
                access_ttl_secs: opt(6),
            },
            rate: r.get(7).map(value_f64).unwrap_or(0.0),
        })
    }

    /// Stores overrides (all fields at once: one HSET, so a change is never half applied).
    pub async fn put_settings(
        &self,
        concert: ConcertId,
        patch: &SettingsPatch,
    ) -> Result<(), ApiError> {
        let k = self.keys(concert);
        let mut fields: Vec<(&str, Value)> = Vec::new();
        let pairs = [
            ("admit_per_tick", patch.admit_per_tick),
            ("tick_ms", patch.tick_ms),
            ("max_active", patch.max_active),
            ("access_ttl_secs", patch.access_ttl_secs),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                fields.push((name, int(v)));
            }
        }
        if fields.is_empty() {
            return Ok(());
        }
        self.pool
            .next_connected()
            .with_options(&crate::redis::request_options())
            .hset::<i64, _, _>(&k.settings, fields)
            .await?;
        Ok(())
    }

    /// Concert ids the admission timer should tick.
    pub async fn concerts(&self) -> Result<Vec<ConcertId>, ApiError> {
        let ids: Vec<u64> = self
            .pool
            .next_connected()
            .with_options(&crate::redis::request_options())
            .smembers(concerts_key(&self.prefix))
            .await?;
        Ok(ids.into_iter().filter_map(ConcertId::new).collect())
    }

    /// Makes the admission timer aware of a concert. Repeated at most every
    /// `REREGISTER` per concert and instance: cheap on the join path, and after the store lost
    /// its data the concert is back on the timer's list within that time.
    pub async fn register_concert(&self, concert: ConcertId) -> Result<(), ApiError> {
        let now = std::time::Instant::now();
        if self.registered.lock().is_ok_and(|r| {
            r.get(&concert)
                .is_some_and(|t| now.duration_since(*t) < REREGISTER)
        }) {
            return Ok(());
        }
        self.add_to_timer(concert).await?;
        if let Ok(mut r) = self.registered.lock() {
            r.insert(concert, now);
        }
        Ok(())
    }

    /// SADD the concert to the timer's set, unconditionally.
    pub async fn add_to_timer(&self, concert: ConcertId) -> Result<(), ApiError> {
        let key = concerts_key(&self.prefix);
        self.pool
            .next_connected()
            .with_options(&crate::redis::request_options())
            .sadd::<i64, _, _>(key, int(concert.get()))
            .await?;
        Ok(())
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn value_f64(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Double(d) => *d,
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

fn value_str(v: &Value) -> &str {
    match v {
        Value::String(s) => s,
        Value::Bytes(b) => std::str::from_utf8(b).unwrap_or(""),
        _ => "",
    }
}

fn parse_place(reply: &[Value]) -> Place {
    match reply.first().map(value_str) {
        Some("admitted") => Place::Admitted {
            ends_ms: reply.get(1).and_then(value_u64).unwrap_or(0),
        },
        Some("waiting") => Place::Waiting {
            position: reply.get(1).and_then(value_u64).unwrap_or(0),
        },
        _ => Place::Gone,
    }
}
