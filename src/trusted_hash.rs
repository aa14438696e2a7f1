//! Hashers for the per-fan maps of the hot path, whose keys nobody outside can choose.
//!
//! std's `HashMap` hashes with SipHash, which resists keys chosen to collide — the right
//! default for anything a client controls (an address, a header). The maps a join or a poll
//! touches for every fan are keyed by what the service itself issued: seqs numbered by Redis or
//! drawn from the OS, user ids and signatures from tokens we verified. For those SipHash buys
//! nothing and cost a measurable share of a join (`perf record`, BENCHMARKS.md). Use these
//! only for such keys; a key a client can pick goes to a SipHash map.
//!
//! hashbrown takes a bucket from a hash's low bits and a 7-bit tag from its top seven, so both
//! ends must vary.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `Hasher` that folds each word of a key into its state with `$mix` (bytes and `usize`s as
/// words too: the keys here are integers, and a byte-wise default would mix eight times).
macro_rules! word_hasher {
    ($name:ident, |$state:ident, $n:ident| $mix:expr) => {
        impl Hasher for $name {
            fn finish(&self) -> u64 {
                self.0
            }

            fn write(&mut self, bytes: &[u8]) {
                for &b in bytes {
                    self.write_u64(u64::from(b));
                }
            }

            fn write_usize(&mut self, n: usize) {
                self.write_u64(n as u64);
            }

            fn write_u64(&mut self, $n: u64) {
                let $state = self.0;
                self.0 = $mix;
            }
        }
    };
}

/// 2^64 / φ: an odd constant with well-spread bits (Fibonacci hashing).
pub const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// One multiplication per word, the halves swapped so that the well-mixed high half also
/// picks the bucket. For ids and random bits (a signature's first eight bytes).
#[derive(Default)]
pub struct IdHasher(u64);

word_hasher!(IdHasher, |state, n| (state.rotate_left(5) ^ n)
    .wrapping_mul(MIX)
    .rotate_left(32));

/// Keeps a number's own low bits as the bucket, so consecutive numbers land in consecutive
/// buckets, and mixes only the tag bits. For seqs: Redis numbers places in the order fans
/// join, and every join marks its new place, so a burst of joins writes one cache line per
/// few marks instead of one random line each (a cache miss per join with a mixing hash), and
/// a contiguous run of seqs — what a line holds — never collides. Other numbers (pre-queue
/// draws, 1..2^50 from the OS's randomness) spread evenly either way.
#[derive(Default)]
pub struct DenseHasher(u64);

/// hashbrown's tag bits.
const TAG_BITS: u64 = 0xFE00_0000_0000_0000;

word_hasher!(DenseHasher, |state, n| (state.rotate_left(7) ^ n)
    ^ (n.wrapping_mul(MIX) & TAG_BITS));

/// A map keyed by ids or random bits the service issued.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A map keyed by numbers handed out in sequence (seqs).
pub type DenseMap<K, V> = HashMap<K, V, BuildHasherDefault<DenseHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    fn hash<H: Hasher + Default>(n: u64) -> u64 {
        BuildHasherDefault::<H>::default().hash_one(n)
    }

    #[test]
    fn consecutive_numbers_get_consecutive_buckets_and_varied_tags() {
        let mask = (1u64 << 20) - 1;
        for n in 1_000u64..1_100 {
            assert_eq!(hash::<DenseHasher>(n) & mask, n & mask);
        }
        let tags: HashSet<u64> = (1_000u64..1_512)
            .map(|n| hash::<DenseHasher>(n) >> 57)
            .collect();
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn ids_spread_over_buckets_and_tags() {
        // Consecutive ids (a site numbering its users) must not pile into few buckets or
        // share a tag.
        let buckets: HashSet<u64> = (1u64..=4096).map(|n| hash::<IdHasher>(n) & 4095).collect();
        assert!(
            buckets.len() > 2500,
            "only {} of 4096 buckets",
            buckets.len()
        );
        let tags: HashSet<u64> = (1u64..=4096).map(|n| hash::<IdHasher>(n) >> 57).collect();
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }
}
