//! Redis key names of one concert's waiting room.
//!
//! Every key of a concert carries the hash tag `{c:ID}`, so on Redis Cluster all of them land in
//! one slot and a Lua script may touch them together. The prefix keeps tenants (and parallel
//! tests) apart on one server.

use crate::domain::ConcertId;

#[derive(Clone, Debug)]
pub struct ConcertKeys {
    /// STRING: arrival counter; every place and every admission takes the next number.
    pub seq: String,
    /// STRING: random id of this store's lifetime; a queue token from another epoch means the
    /// store lost its data since the token was issued.
    pub epoch: String,
    /// ZSET user -> seq: the line, in arrival order.
    pub waiting: String,
    /// Key *prefix* of the last-seen buckets: HASH `<seen><floor(seq/128)>`, field `seq % 128`
    /// -> last poll (s). Small hashes stay listpack-encoded in Redis: ~10 bytes per waiting
    /// user, where a second sorted set would cost ~110.
    pub seen: String,
    /// ZSET user -> admission end (ms): who may book now.
    pub admitted: String,
    /// HASH user -> seq of the current admission (binds access tokens to one admission).
    pub adm_seq: String,
    /// HASH: counters and the figures ETA needs (admitted_total, last tick, measured rate…).
    pub stats: String,
    /// HASH: per-concert admission settings set by the admin API.
    pub settings: String,
}

impl ConcertKeys {
    pub fn new(prefix: &str, concert: ConcertId) -> Self {
        let base = format!("{prefix}:{{c:{concert}}}");
        ConcertKeys {
            seq: format!("{base}:seq"),
            epoch: format!("{base}:epoch"),
            waiting: format!("{base}:waiting"),
            seen: format!("{base}:seen:"),
            admitted: format!("{base}:admitted"),
            adm_seq: format!("{base}:adm"),
            stats: format!("{base}:stats"),
            settings: format!("{base}:settings"),
        }
    }
}

/// SET of concert ids that have a waiting room; the admission timer walks it.
pub fn concerts_key(prefix: &str) -> String {
    format!("{prefix}:concerts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_per_concert() {
        let k = ConcertKeys::new("qg", ConcertId::new(42).unwrap());
        for key in [
            &k.seq,
            &k.epoch,
            &k.waiting,
            &k.seen,
            &k.admitted,
            &k.adm_seq,
            &k.stats,
            &k.settings,
        ] {
            assert!(key.starts_with("qg:{c:42}:"), "{key}");
        }
        assert_eq!(concerts_key("t1"), "t1:concerts");
    }
}
