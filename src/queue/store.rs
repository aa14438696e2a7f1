//! Every read and write of queue state: one atomic Lua script call (one round trip) each.
//!
//! The store knows keys, scripts and reply shapes; it knows nothing of tokens, ETAs or HTTP.

use super::keys::{ConcertKeys, concerts_key};
use super::model::{
    Access, Ended, Figures, JoinItem, JoinKind, Joined, Pace, Place, SettingsPatch, TickReport,
    Waits,
};
use super::scripts::Scripts;
use crate::config::QueueDefaults;
use crate::domain::{LineId, UserId};
use crate::redis::{int, request_options, value_f64, value_str, value_u64};
use crate::store_error::StoreError;
use fred::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a used stream ticket is remembered: well past its own expiry.
const TICKET_MEMORY_SECS: i64 = 120;

/// How often an instance re-adds a concert it serves to the timer's set.
const REREGISTER: Duration = Duration::from_secs(1);

pub struct QueueStore {
    pool: Pool,
    prefix: String,
    scripts: Scripts,
    /// Concerts this instance already added to the timer's set (saves a round trip per join).
    registered: Mutex<HashMap<LineId, Instant>>,
    /// Each line's key names (immutable; see `keys`).
    key_names: RwLock<HashMap<LineId, Arc<ConcertKeys>>>,
    /// Each concert's pace as of this instance's last tick call, for ETAs without a round trip.
    paces: RwLock<HashMap<LineId, Pace>>,
}

/// Pre-queue places are numbered by a random draw below 2^50 (see `lua/join.lua`), taken
/// from the OS's randomness: unpredictable to clients.
fn pre_queue_draw() -> u64 {
    let b = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    (n & ((1 << 50) - 1)).max(1)
}

/// Wait buckets read from a reply, `at(i)` being bucket i.
fn waits_from(at: impl Fn(usize) -> u64) -> Waits {
    let mut w = Waits::default();
    for (i, c) in w.counts.iter_mut().enumerate() {
        *c = at(i);
    }
    w
}

fn keys<const N: usize>(k: [&String; N]) -> Vec<Key> {
    k.into_iter().map(|s| Key::from(s.as_str())).collect()
}

impl QueueStore {
    pub fn new(pool: Pool, prefix: String) -> Self {
        QueueStore {
            pool,
            prefix,
            scripts: Scripts::new(),
            registered: Default::default(),
            key_names: Default::default(),
            paces: Default::default(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The line's key names, built once per line and instance (polls ask for them a lot).
    pub fn keys(&self, line: LineId) -> Arc<ConcertKeys> {
        if let Some(k) = self
            .key_names
            .read()
            .ok()
            .and_then(|m| m.get(&line).cloned())
        {
            return k;
        }
        let k = Arc::new(ConcertKeys::new(&self.prefix, line));
        if let Ok(mut m) = self.key_names.write() {
            m.insert(line, k.clone());
        }
        k
    }

    fn client(&self) -> &Client {
        self.pool.next_connected()
    }

    /// SCRIPT LOAD everything on every primary; called at start so the first requests skip
    /// the NOSCRIPT detour.
    pub async fn load_scripts(&self) -> Result<(), StoreError> {
        for s in self.scripts.all() {
            s.load_everywhere(self.client()).await?;
        }
        Ok(())
    }

    /// Is the admission (user, seq) of `line` still live? If not, why not.
    pub async fn check_access(
        &self,
        line: LineId,
        user: UserId,
        seq: u64,
    ) -> Result<Access, StoreError> {
        let k = self.keys(line);
        let reply: Value = self
            .scripts
            .check_access
            .run(
                self.client(),
                keys([&k.admitted, &k.adm_seq, &k.ended]),
                vec![int(user.get()), int(seq)],
            )
            .await?;
        Ok(match reply.as_i64() {
            Some(1) => Access::Live,
            _ => Access::Ended(Ended::from_reason(value_str(&reply))),
        })
    }

    /// Ends the user's admission because they paid (only the admission with `seq`, if given)
    /// and removes them from the line. Returns whether an admission was ended.
    pub async fn revoke(
        &self,
        line: LineId,
        user: UserId,
        seq: Option<u64>,
    ) -> Result<bool, StoreError> {
        let k = self.keys(line);
        let seq: Value = match seq {
            Some(s) => int(s),
            None => "*".into(),
        };
        let ended: i64 = self
            .scripts
            .revoke
            .run(
                self.client(),
                keys([
                    &k.admitted,
                    &k.adm_seq,
                    &k.waiting,
                    &k.seen,
                    &k.stats,
                    &k.ended,
                ]),
                vec![int(user.get()), seq, Ended::Paid.reason().into()],
            )
            .await?;
        Ok(ended == 1)
    }

    /// Admits one user immediately, outside the line (operators and tests). Returns the
    /// admission's (seq, end in ms).
    pub async fn grant(
        &self,
        line: LineId,
        user: UserId,
        ttl_secs: u64,
    ) -> Result<(u64, u64), StoreError> {
        let k = self.keys(line);
        let granted: (u64, u64) = self
            .scripts
            .grant
            .run(
                self.client(),
                keys([
                    &k.admitted,
                    &k.adm_seq,
                    &k.seq,
                    &k.waiting,
                    &k.seen,
                    &k.stats,
                ]),
                vec![int(user.get()), int(ttl_secs.saturating_mul(1000))],
            )
            .await?;
        self.register_line(line).await?;
        Ok(granted)
    }

    /// Takes places in the line (or returns the ones users have), in the order given. Each
    /// item is a user and the (seq, epoch) of a queue token the caller still holds, if any.
    pub async fn join_batch(
        &self,
        line: LineId,
        items: &[JoinItem],
    ) -> Result<Vec<Joined>, StoreError> {
        let k = self.keys(line);
        let mut argv = Vec::with_capacity(1 + items.len() * 4);
        argv.push(uuid::Uuid::new_v4().simple().to_string().into());
        for item in items {
            let (seq, epoch) = item
                .restore
                .as_ref()
                .map_or((0, ""), |(s, e)| (*s, e.as_str()));
            argv.push(int(item.user.get()));
            argv.push(int(seq));
            argv.push(epoch.into());
            argv.push(int(pre_queue_draw()));
        }
        let reply: Vec<Value> = self
            .scripts
            .join
            .run(
                self.client(),
                keys([
                    &k.seq,
                    &k.epoch,
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                    &k.ended,
                    &k.settings,
                ]),
                argv,
            )
            .await?;
        let epoch = reply.last().map(value_str).unwrap_or_default().to_owned();
        let n = |v: &Value| value_u64(v).unwrap_or(0);
        let starts_ms = reply
            .len()
            .checked_sub(2)
            .and_then(|i| reply.get(i))
            .map_or(0, n);
        let joined: Vec<Joined> = reply
            .chunks_exact(5)
            .map(|r| Joined {
                seq: n(&r[1]),
                epoch: epoch.clone(),
                how: match n(&r[3]) {
                    1 => JoinKind::New,
                    2 => JoinKind::Restored,
                    _ => JoinKind::Existing,
                },
                place: match n(&r[0]) {
                    2 => Place::Admitted { ends_ms: n(&r[4]) },
                    3 => Place::PreQueue { starts_ms },
                    _ => Place::Waiting { position: n(&r[2]) },
                },
            })
            .collect();
        if joined.len() != items.len() || epoch.is_empty() {
            return Err(StoreError::bug("join reply of the wrong shape"));
        }
        Ok(joined)
    }

    /// Where the places (user, seq, mark) of one line stand: entry i answers `items[i]`. With
    /// `mark`, the place's last-seen time is checked against `idle_secs` and renewed.
    pub async fn status_batch(
        &self,
        line: LineId,
        idle_secs: u64,
        items: &[(UserId, u64, bool)],
    ) -> Result<Vec<Place>, StoreError> {
        let k = self.keys(line);
        let mut argv = Vec::with_capacity(1 + items.len() * 3);
        argv.push(int(idle_secs));
        for (user, seq, mark) in items {
            argv.push(int(user.get()));
            argv.push(int(*seq));
            argv.push(int(u64::from(*mark)));
        }
        let reply: Vec<Value> = self
            .scripts
            .status
            .run(
                self.client(),
                keys([
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                    &k.settings,
                ]),
                argv,
            )
            .await?;
        let Some((start, places)) = reply.split_first() else {
            return Err(StoreError::bug("status reply of the wrong shape"));
        };
        if places.len() != items.len() {
            return Err(StoreError::bug("status reply of the wrong shape"));
        }
        let starts_ms = value_u64(start).unwrap_or(0);
        Ok(places
            .iter()
            .map(|v| Place::from_compact(v.as_i64().unwrap_or(0), starts_ms))
            .collect())
    }

    /// Frees the place named by (user, seq). Returns whether there was one.
    pub async fn leave(&self, line: LineId, user: UserId, seq: u64) -> Result<bool, StoreError> {
        let k = self.keys(line);
        let freed: i64 = self
            .scripts
            .leave
            .run(
                self.client(),
                keys([
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                    &k.ended,
                ]),
                vec![int(user.get()), int(seq)],
            )
            .await?;
        Ok(freed == 1)
    }

    /// Uses a stream ticket: true the first time `jti` is seen, false ever after (until long
    /// after the ticket itself has expired).
    pub async fn redeem_ticket(&self, line: LineId, jti: &str) -> Result<bool, StoreError> {
        let key = format!("{}{jti}", self.keys(line).tickets);
        let set: Option<String> = self
            .client()
            .with_options(&request_options())
            .set(
                key,
                1,
                Some(fred::types::Expiration::EX(TICKET_MEMORY_SECS)),
                Some(fred::types::SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    /// The concert's pace as last seen by this instance's timer (default before its first tick).
    pub fn pace(&self, line: LineId) -> Pace {
        self.paces
            .read()
            .ok()
            .and_then(|p| p.get(&line).copied())
            .unwrap_or_default()
    }

    /// One admission tick for a concert (a no-op unless this tick period is still unclaimed).
    pub async fn tick(&self, line: LineId, d: &QueueDefaults) -> Result<TickReport, StoreError> {
        let k = self.keys(line);
        let r: Vec<i64> = self
            .scripts
            .tick
            .run(
                self.client(),
                keys([
                    &k.waiting,
                    &k.seen,
                    &k.admitted,
                    &k.adm_seq,
                    &k.stats,
                    &k.settings,
                    &k.ended,
                    &k.seq,
                    &k.clock,
                    &k.waits,
                ]),
                vec![
                    int(d.admit_per_tick),
                    int(d.tick_ms),
                    int(d.max_active),
                    int(d.access_ttl_secs),
                    int(d.idle_secs),
                ],
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
            sale_start_ms: at(12),
            before_start: r.get(13).copied() == Some(-2),
            drawn_now: r.get(13).and_then(|d| u64::try_from(*d).ok()),
            waits: waits_from(|i| at(14 + i)),
        };
        if let Ok(mut paces) = self.paces.write() {
            paces.insert(
                line,
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
    pub async fn figures(&self, line: LineId) -> Result<Figures, StoreError> {
        let k = self.keys(line);
        let r: Vec<Value> = self
            .scripts
            .figures
            .run(
                self.client(),
                keys([&k.waiting, &k.admitted, &k.stats, &k.settings, &k.waits]),
                Vec::new(),
            )
            .await?;
        let opt = |i: usize| r.get(i).and_then(value_u64);
        let sale_start_ms = opt(8).unwrap_or(0);
        Ok(Figures {
            waiting: opt(0).unwrap_or(0),
            admitted: opt(1).unwrap_or(0),
            admitted_total: opt(2).unwrap_or(0),
            settings: SettingsPatch {
                admit_per_tick: opt(3),
                tick_ms: opt(4),
                max_active: opt(5),
                access_ttl_secs: opt(6),
                sale_start_ms: Some((sale_start_ms > 0).then_some(sale_start_ms)),
            },
            rate: r.get(7).map(value_f64).unwrap_or(0.0),
            sale_start_ms,
            pre_queue: opt(9).unwrap_or(0),
            draws_total: opt(10).unwrap_or(0),
            waits: waits_from(|i| opt(11 + i).unwrap_or(0)),
        })
    }

    /// Stores overrides (all fields at once: one HSET, so a change is never half applied).
    pub async fn put_settings(
        &self,
        line: LineId,
        patch: &SettingsPatch,
    ) -> Result<(), StoreError> {
        let k = self.keys(line);
        let fields: Vec<(&str, Value)> = [
            ("admit_per_tick", patch.admit_per_tick),
            ("tick_ms", patch.tick_ms),
            ("max_active", patch.max_active),
            ("access_ttl_secs", patch.access_ttl_secs),
            // Opening a sale now stores 0: "no start" to every script.
            ("sale_start_ms", patch.sale_start_ms.map(|s| s.unwrap_or(0))),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, int(v))))
        .collect();
        if fields.is_empty() {
            return Ok(());
        }
        self.client()
            .with_options(&request_options())
            .hset::<i64, _, _>(&k.settings, fields)
            .await?;
        Ok(())
    }

    /// The lines the admission timer should tick.
    pub async fn lines(&self) -> Result<Vec<LineId>, StoreError> {
        let members: Vec<String> = self
            .client()
            .with_options(&request_options())
            .smembers(concerts_key(&self.prefix))
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| LineId::from_member(m))
            .collect())
    }

    /// Makes the admission timer aware of a line. Repeated at most every
    /// `REREGISTER` per concert and instance: cheap on the join path, and after the store lost
    /// its data the concert is back on the timer's list within that time.
    pub async fn register_line(&self, line: LineId) -> Result<(), StoreError> {
        let now = Instant::now();
        if self.registered.lock().is_ok_and(|r| {
            r.get(&line)
                .is_some_and(|t| now.duration_since(*t) < REREGISTER)
        }) {
            return Ok(());
        }
        self.add_to_timer(line).await?;
        if let Ok(mut r) = self.registered.lock() {
            r.insert(line, now);
        }
        Ok(())
    }

    /// SADD the line to the timer's set, unconditionally.
    pub async fn add_to_timer(&self, line: LineId) -> Result<(), StoreError> {
        self.client()
            .with_options(&request_options())
            .sadd::<i64, _, _>(concerts_key(&self.prefix), line.member())
            .await?;
        Ok(())
    }
}
