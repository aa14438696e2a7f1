//! Every operation on queue state, each one atomic Lua script call (one round trip).

use super::keys::{ConcertKeys, concerts_key};
use crate::domain::{ConcertId, UserId};
use crate::error::ApiError;
use crate::redis::Script;
use crate::tokens::AccessToken;
use fred::prelude::*;

/// The scripts in `lua/`, compiled in.
pub struct Scripts {
    pub check_access: Script,
    pub revoke: Script,
    pub grant: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            check_access: Script::new("check_access", include_str!("../../lua/check_access.lua")),
            revoke: Script::new("revoke", include_str!("../../lua/revoke.lua")),
            grant: Script::new("grant", include_str!("../../lua/grant.lua")),
        }
    }

    fn all(&self) -> [&Script; 3] {
        [&self.check_access, &self.revoke, &self.grant]
    }
}

pub struct QueueStore {
    pool: Pool,
    prefix: String,
    scripts: Scripts,
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
            s.load(self.pool.next()).await?;
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
                self.pool.next(),
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
                self.pool.next(),
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
                self.pool.next(),
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

    /// Makes the admission timer aware of a concert.
    pub async fn register_concert(&self, concert: ConcertId) -> Result<(), ApiError> {
        let key = concerts_key(&self.prefix);
        self.pool
            .next()
            .with_options(&crate::redis::request_options())
            .sadd::<i64, _, _>(key, int(concert.get()))
            .await?;
        Ok(())
    }
}
