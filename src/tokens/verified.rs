//! The cache of tokens this instance has already checked (see `Verified`).

use super::{LEEWAY_SECS, TokenError, now_secs};
use crate::trusted_hash::{IdMap, MIX};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;

/// Tokens whose signature and claims this instance has checked, until they expire; their
/// claims are reused. What a token grants is still checked where it can change (a revoked
/// admission is refused by Redis, not here).
///
/// A token is found by its signature, compared in full: an HS256 signature is a MAC nobody
/// can make without the key, so the signature alone already names one token we issued, and
/// whoever presents it gets exactly that token's claims — never another holder's. A keyed
/// fingerprint of the whole text is checked beside it, so that a copy with a changed header or
/// payload is not taken for the original (it goes to `verify`, which refuses it).
///
/// Why not a cryptographic hash of the whole token, as before: SipHash over a ~250-byte token
/// was half of a status poll's token check (~2,000 instructions, callgrind, BENCHMARKS.md).
/// The signature needs no hashing to be spread evenly — it is uniformly random, and only
/// tokens that verified (that is, signatures we made) are ever stored, so nobody can fill the
/// map with chosen collisions.
pub(super) struct Verified<T> {
    tokens: Mutex<IdMap<Signature, Entry<T>>>,
    /// The fingerprint's key, random per process.
    seed: u64,
}

struct Entry<T> {
    claims: T,
    exp: u64,
    fingerprint: u64,
}

/// The length of an HS256 signature in base64url without padding (32 bytes).
const SIGNATURE_LEN: usize = 43;

/// A token's signature, as it appears in the token.
#[derive(PartialEq, Eq)]
struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    fn of(token: &str) -> Option<Signature> {
        let (_, sig) = token.rsplit_once('.')?;
        sig.as_bytes().try_into().ok().map(Signature)
    }
}

impl Hash for Signature {
    /// Eight bytes of a MAC are as random as a hash of all of it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// A keyed 64-bit fingerprint of `text`, a few instructions per eight bytes. It only has to
/// tell an altered copy of a token from the token; finding a collision would gain nothing, as
/// the copy carries the same signature and so gets the same claims.
fn fingerprint(seed: u64, text: &[u8]) -> u64 {
    let mut h = seed ^ (text.len() as u64).wrapping_mul(MIX);
    let mut chunks = text.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(MIX)
            .rotate_left(23);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(MIX);
    h ^ (h >> 32)
}

impl<T: Clone> Verified<T> {
    pub(super) fn new() -> Self {
        Verified {
            tokens: Mutex::new(IdMap::default()),
            seed: RandomState::new().hash_one(0u64),
        }
    }

    /// Remembers a token this instance has just signed with these claims: the holder presents
    /// it next (a fan's first poll after joining), and its claims are already known.
    pub(super) fn remember(&self, token: &str, claims: T, exp: u64) {
        if let Some(signature) = Signature::of(token) {
            self.insert(
                signature,
                fingerprint(self.seed, token.as_bytes()),
                claims,
                exp,
            );
        }
    }

    fn insert(&self, signature: Signature, fingerprint: u64, claims: T, exp: u64) {
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(
                signature,
                Entry {
                    claims,
                    exp,
                    fingerprint,
                },
            );
        }
    }

    /// The claims of `token`, from the cache or from `verify` (which also says when the
    /// token expires).
    pub(super) fn get_or_verify(
        &self,
        token: &str,
        verify: impl FnOnce() -> Result<(T, u64), TokenError>,
    ) -> Result<T, TokenError> {
        // Not an HS256 signature's length: not one of ours, and never cached.
        let Some(signature) = Signature::of(token) else {
            return verify().map(|(t, _)| t);
        };
        let print = fingerprint(self.seed, token.as_bytes());
        if let Ok(cache) = self.tokens.lock()
            && let Some(e) = cache.get(&signature)
            && e.fingerprint == print
            && e.exp + LEEWAY_SECS > now_secs()
        {
            return Ok(e.claims.clone());
        }
        let (claims, exp) = verify()?;
        self.insert(signature, print, claims.clone(), exp);
        Ok(claims)
    }
}

/// Verified tokens remembered at most, per kind; the memory is dropped wholesale past it.
const VERIFIED_CACHE: usize = 200_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn token(payload: &str, sig_char: char) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{payload}.{}",
            sig_char.to_string().repeat(SIGNATURE_LEN)
        )
    }

    #[test]
    fn a_token_is_verified_once_and_an_altered_copy_is_verified_again() {
        let v = Verified::<u32>::new();
        let calls = Cell::new(0);
        let verify = |n: u32| {
            calls.set(calls.get() + 1);
            Ok((n, now_secs() + 60))
        };
        let a = token("eyJzdWIiOiIxIn0", 'a');
        assert_eq!(v.get_or_verify(&a, || verify(1)), Ok(1));
        assert_eq!(v.get_or_verify(&a, || verify(2)), Ok(1));
        assert_eq!(calls.get(), 1);
        // Same signature, other payload: not the remembered token.
        let altered = token("eyJzdWIiOiIyIn0", 'a');
        assert_eq!(
            v.get_or_verify(&altered, || Err(TokenError::BadSignature)),
            Err(TokenError::BadSignature)
        );
        // The original is still remembered.
        assert_eq!(v.get_or_verify(&a, || verify(3)), Ok(1));
        assert_eq!(calls.get(), 1);
        // Another signature is another token.
        assert_eq!(v.get_or_verify(&token("x", 'b'), || verify(4)), Ok(4));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_remembered_token_is_not_verified_but_an_altered_copy_is() {
        let v = Verified::<u32>::new();
        let a = token("eyJzdWIiOiIxIn0", 'a');
        v.remember(&a, 1, now_secs() + 60);
        assert_eq!(v.get_or_verify(&a, || Err(TokenError::BadSignature)), Ok(1));
        assert_eq!(
            v.get_or_verify(&token("eyJzdWIiOiIyIn0", 'a'), || Err(
                TokenError::Malformed
            )),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn expired_entries_and_odd_signatures_are_verified_each_time() {
        let v = Verified::<u32>::new();
        let calls = Cell::new(0);
        let stale = |n: u32| {
            calls.set(calls.get() + 1);
            Ok((n, now_secs().saturating_sub(LEEWAY_SECS + 1)))
        };
        let a = token("p", 'a');
        assert_eq!(v.get_or_verify(&a, || stale(1)), Ok(1));
        assert_eq!(v.get_or_verify(&a, || stale(2)), Ok(2));
        let short = "h.p.tooshort";
        assert_eq!(v.get_or_verify(short, || stale(3)), Ok(3));
        assert_eq!(v.get_or_verify(short, || stale(4)), Ok(4));
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn fingerprints_see_every_byte_and_the_length() {
        let base = fingerprint(7, b"abcdefghijklmnopq");
        assert_ne!(base, fingerprint(7, b"abcdefghijklmnopr"));
        assert_ne!(base, fingerprint(7, b"bbcdefghijklmnopq"));
        assert_ne!(base, fingerprint(7, b"abcdefghijklmnopq\0"));
        assert_ne!(base, fingerprint(8, b"abcdefghijklmnopq"));
        assert_eq!(base, fingerprint(7, b"abcdefghijklmnopq"));
    }
}
