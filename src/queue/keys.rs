//! Redis key names of one concert's waiting room.
//!
//! Every key of a line carries the hash tag `{c:CONCERT.QUEUEID}`, so on Redis Cluster all of
//! them land in one slot and a Lua script may touch them together; the random queue id ties the
//! state to the concert it was made for (see `LineId`). The prefix keeps tenants (and parallel
//! tests) apart on one server.

use crate::domain::LineId;

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
    /// HASH user -> "seq:reason" of the user's last admission that ended (paid, left,
    /// expired): lets a refused access token say why.
    pub ended: String,
    /// Key *prefix* of used stream tickets: STRING `<tickets><jti>`, set once, short TTL.
    pub tickets: String,
    /// ZSET counter value -> when (ms): when arrival numbers were reached (wait times).
    pub clock: String,
    /// Key *prefix* of per-minute wait histograms: HASH `<waits><minute>`.
    pub waits: String,
}

impl ConcertKeys {
    pub fn new(prefix: &str, line: LineId) -> Self {
        let base = format!("{prefix}:{}", tag(line));
        ConcertKeys {
            seq: format!("{base}:seq"),
            epoch: format!("{base}:epoch"),
            waiting: format!("{base}:waiting"),
            seen: format!("{base}:seen:"),
            admitted: format!("{base}:admitted"),
            adm_seq: format!("{base}:adm"),
            stats: format!("{base}:stats"),
            settings: format!("{base}:settings"),
            ended: format!("{base}:ended"),
            tickets: format!("{base}:ticket:"),
            clock: format!("{base}:clock"),
            waits: format!("{base}:waits:"),
        }
    }

    /// `tick.lua`'s KEYS, in the order its header lists them (the timer's calls and the tests
    /// that call the script directly both take them from here).
    pub fn tick_keys(&self) -> [&String; 10] {
        [
            &self.waiting,
            &self.seen,
            &self.admitted,
            &self.adm_seq,
            &self.stats,
            &self.settings,
            &self.ended,
            &self.seq,
            &self.clock,
            &self.waits,
        ]
    }

    /// The line's keys with fixed names: all of its state but the keys under the three
    /// prefixes (`seen`, `tickets`, `waits`), which are made as needed.
    pub fn fixed(&self) -> [&String; 9] {
        [
            &self.seq,
            &self.epoch,
            &self.waiting,
            &self.admitted,
            &self.adm_seq,
            &self.stats,
            &self.settings,
            &self.ended,
            &self.clock,
        ]
    }
}

/// Slot ranges a cluster's 16384 slots are striped into for placing lines.
const STRIPES: u64 = 16;

/// A random queue id for a new line of `concert`, chosen so that the line's hash tag lands in
/// slot stripe `concert % 16` of the 16384 cluster slots. Consecutive concerts then cycle
/// through the slot space, so on a cluster (whose masters own contiguous slot ranges) the
/// lines spread evenly over the shards instead of at random.
pub fn striped_queue_id(concert: crate::domain::ConcertId) -> u64 {
    let stripe = concert.get() % STRIPES;
    let width = 16384 / STRIPES;
    loop {
        let queue_id = LineId::fresh_queue_id();
        let line = LineId { concert, queue_id };
        let slot = u64::from(fred::util::redis_keyslot(tag(line).as_bytes()));
        if slot / width == stripe {
            return queue_id;
        }
    }
}

/// The hash tag of a line's keys, braces included.
fn tag(line: LineId) -> String {
    format!("{{c:{line}}}")
}

/// SET of lines (`concert.queueid`) that have a waiting room; the admission timer walks it.
/// The one global key per tick: read once per second per instance, never per poll.
pub fn concerts_key(prefix: &str) -> String {
    format!("{prefix}:concerts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_per_concert() {
        let line = LineId {
            concert: crate::domain::ConcertId::new(42).unwrap(),
            queue_id: 0xabc,
        };
        let k = ConcertKeys::new("qg", line);
        for key in k.fixed().into_iter().chain([&k.seen, &k.tickets, &k.waits]) {
            assert!(key.starts_with("qg:{c:42.abc}:"), "{key}");
        }
        assert_eq!(concerts_key("t1"), "t1:concerts");
    }

    #[test]
    fn striped_lines_cycle_through_the_slot_space() {
        let mut per_stripe = [0u32; 16];
        for c in 1..=64u64 {
            let concert = crate::domain::ConcertId::new(c).unwrap();
            let line = LineId {
                concert,
                queue_id: striped_queue_id(concert),
            };
            let k = ConcertKeys::new("qg", line);
            let slot = u64::from(fred::util::redis_keyslot(k.waiting.as_bytes()));
            assert_eq!(slot / 1024, c % 16, "concert {c}");
            per_stripe[(slot / 1024) as usize] += 1;
        }
        assert!(per_stripe.iter().all(|n| *n == 4), "{per_stripe:?}");
    }
}
