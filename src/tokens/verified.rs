//! The cache of tokens this instance has already checked (see `Verified`).

use super::{LEEWAY_SECS, TokenError, now_secs};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Tokens whose signature and claims this instance has checked, until they expire. A token
/// is recognised by a keyed hash of its text — SipHash with a random key per process, so
/// nobody can craft a different token that matches a remembered one — and its claims are
/// reused. What a token grants is still checked where it can change (a revoked admission is
/// refused by Redis, not here).
pub(super) struct Verified<T> {
    tokens: Mutex<HashMap<u64, (T, u64)>>,
    keys: RandomState,
}

impl<T: Clone> Verified<T> {
    pub(super) fn new() -> Self {
        Verified {
            tokens: Mutex::new(HashMap::new()),
            keys: RandomState::new(),
        }
    }

    /// The claims of `token`, from the cache or from `verify` (which also says when the
    /// token expires).
    pub(super) fn get_or_verify(
        &self,
        token: &str,
        verify: impl FnOnce() -> Result<(T, u64), TokenError>,
    ) -> Result<T, TokenError> {
        let key = self.keys.hash_one(token);
        if let Ok(cache) = self.tokens.lock()
            && let Some((t, exp)) = cache.get(&key)
            && *exp + LEEWAY_SECS > now_secs()
        {
            return Ok(t.clone());
        }
        let (t, exp) = verify()?;
        if let Ok(mut cache) = self.tokens.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(key, (t.clone(), exp));
        }
        Ok(t)
    }
}

/// Verified tokens remembered at most, per kind; the memory is dropped wholesale past it.
const VERIFIED_CACHE: usize = 200_000;
