//! Every read and write of queue state: one atomic Lua script call (one round trip) each.
//!
//! The store knows keys, scripts and reply shapes; it knows nothing of tokens, ETAs or HTTP.

use super::keys::ConcertKeys;
use super::model::{Access, Ended, JoinItem, JoinKind, Joined, Pace, Place, SettingsPatch};
use super::scripts::Scripts;
use crate::domain::{LineId, UserId};
use crate::redis::{int, request_options, value_str, value_u64};
use crate::store_error::StoreError;
use fred::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// How long a used stream ticket is remembered: well past its own expiry.
const TICKET_MEMORY_SECS: i64 = 120;

pub struct QueueStore {
    pool: Pool,
    pub(super) prefix: String,
    pub(super) scripts: Scripts,
    /// Concerts this instance already added to the timer's set (saves a round trip per join).
    pub(super) registered: Mutex<HashMap<LineId, Instant>>,
    /// Each line's key names (immutable; see `keys`).
    key_names: RwLock<HashMap<LineId, Arc<ConcertKeys>>>,
    /// Each concert's pace as of this instance's last tick call, for ETAs without a round trip.
    pub(super) paces: RwLock<HashMap<LineId, Pace>>,
}

/// What one join call needs from the OS's randomness, taken with one system call: a fresh
/// epoch id (a UUIDv4 in simple form; `join.lua` uses it only if the store has none yet) and,
/// per join, the random number that orders a pre-queue place — below 2^50 (see `lua/join.lua`)
/// and unpredictable to clients.
fn join_randomness(joins: usize) -> Result<(String, Vec<u64>), StoreError> {
    let mut bytes = vec![0u8; 16 + joins * 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::bug(format!("the OS's randomness failed: {e}")))?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    let epoch = uuid::Builder::from_random_bytes(id)
        .into_uuid()
        .simple()
        .to_string();
    let draws = bytes[16..]
        .chunks_exact(8)
        .map(|c| {
            let n = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            (n & ((1 << 50) - 1)).max(1)
        })
        .collect();
    Ok((epoch, draws))
}

pub(super) fn keys<const N: usize>(k: [&String; N]) -> Vec<Key> {
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

    pub(super) fn client(&self) -> &Client {
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

    /// Are these admissions (user, seq) of `line` still live? If not, why not. One answer per
    /// item, in order.
    pub async fn check_access_batch(
        &self,
        line: LineId,
        items: &[(UserId, u64)],
    ) -> Result<Vec<Access>, StoreError> {
        let k = self.keys(line);
        let mut argv = Vec::with_capacity(items.len() * 2);
        for (user, seq) in items {
            argv.push(int(user.get()));
            argv.push(int(*seq));
        }
        let reply: Vec<Value> = self
            .scripts
            .check_access
            .run(
                self.client(),
                keys([&k.admitted, &k.adm_seq, &k.ended]),
                argv,
            )
            .await?;
        if reply.len() != items.len() {
            return Err(StoreError::bug("check_access reply of the wrong shape"));
        }
        Ok(reply
            .iter()
            .map(|v| match v.as_i64() {
                Some(1) => Access::Live,
                _ => Access::Ended(Ended::from_reason(value_str(v))),
            })
            .collect())
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
                [int(user.get()), seq, Ended::Paid.reason().into()]
                    .into_iter()
                    .chain(self.end_notice(line, user))
                    .collect(),
            )
            .await?;
        Ok(ended == 1)
    }

    /// The channel and notice the scripts that end an admission publish (see `ends`), as their
    /// last two arguments.
    fn end_notice(&self, line: LineId, user: UserId) -> [Value; 2] {
        [
            super::ends::channel(&self.prefix).into(),
            super::ends::notice(line.concert, user).into(),
        ]
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
                [int(user.get()), int(ttl_secs.saturating_mul(1000))]
                    .into_iter()
                    .chain(self.end_notice(line, user))
                    .collect(),
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
        let (fresh_epoch, draws) = join_randomness(items.len())?;
        argv.push(fresh_epoch.into());
        for (item, draw) in items.iter().zip(draws) {
            let (seq, epoch) = item
                .restore
                .as_ref()
                .map_or((0, ""), |(s, e)| (*s, e.as_str()));
            argv.push(int(item.user.get()));
            argv.push(int(seq));
            argv.push(epoch.into());
            argv.push(int(draw));
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
        if let [only] = reply.as_slice()
            && value_str(only) == "sale_start_unknown"
        {
            return Err(StoreError::SaleStartUnknown);
        }
        let epoch: std::sync::Arc<str> = reply.last().map(value_str).unwrap_or_default().into();
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

    /// Puts a line's recorded settings back after the store lost them: the overrides, then
    /// the sale start (0 = none) — last, because a line with a sale start is one joins take
    /// as intact. Each only where none is there again (an operator's or another instance's):
    /// `HSETNX`. True when the sale start was missing, i.e. the line had been lost.
    pub async fn restore_settings(
        &self,
        line: LineId,
        recorded: &SettingsPatch,
    ) -> Result<bool, StoreError> {
        let k = self.keys(line);
        let fields = [
            ("admit_per_tick", recorded.admit_per_tick),
            ("tick_ms", recorded.tick_ms),
            ("max_active", recorded.max_active),
            ("access_ttl_secs", recorded.access_ttl_secs),
            (
                "sale_start_ms",
                Some(recorded.sale_start_ms.flatten().unwrap_or(0)),
            ),
        ];
        let mut put_back = false;
        for (name, value) in fields {
            if let Some(v) = value {
                put_back = self
                    .client()
                    .with_options(&request_options())
                    .hsetnx(&k.settings, name, int(v))
                    .await?;
            }
        }
        Ok(put_back)
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
        // status.lua takes the places to be marked first (and how many they are), so it needs
        // no per-place flag; `order` lists the items in the order they are sent.
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| items[i].2).collect();
        let marked = order.len();
        order.extend((0..items.len()).filter(|&i| !items[i].2));
        let mut argv = Vec::with_capacity(2 + items.len() * 2);
        argv.push(int(idle_secs));
        argv.push(int(marked as u64));
        for &i in &order {
            let (user, seq, _) = items[i];
            argv.push(int(user.get()));
            argv.push(int(seq));
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
        let mut answers = vec![Place::Gone; items.len()];
        for (&i, v) in order.iter().zip(places) {
            answers[i] = Place::from_compact(v.as_i64().unwrap_or(0), starts_ms);
        }
        Ok(answers)
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
                [int(user.get()), int(seq)]
                    .into_iter()
                    .chain(self.end_notice(line, user))
                    .collect(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_draw_gives_an_epoch_id_and_a_pre_queue_number_per_join() {
        let (epoch, draws) = join_randomness(300).unwrap();
        let id = uuid::Uuid::parse_str(&epoch).unwrap();
        assert_eq!((epoch.len(), id.get_version_num()), (32, 4));
        assert_eq!(draws.len(), 300);
        assert!(draws.iter().all(|d| (1..1 << 50).contains(d)));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert_eq!(distinct.len(), 300);
        assert_ne!(join_randomness(0).unwrap().0, epoch);
    }
}
