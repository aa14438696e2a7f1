//! Rate limits on the routes abuse goes for: joining a queue, charging a wallet, holding a seat.
//!
//! GCRA (a token bucket kept as one timestamp per key) per user and, when enabled, per client
//! address. The state is **per instance**, in memory: no extra round trip on the join path,
//! and with N instances behind a balancer a client gets at most N times the configured rate —
//! good enough to stop a runaway script, which is the point. (The hard limits that protect
//! the sale itself — 4 holds per user per schedule, admission caps — are global and exact.)
//!
//! Client addresses: the TCP peer, or, when the peer is one of `TRUSTED_PROXIES`, the last
//! address in `X-Forwarded-For`. Per-address limits are off unless configured, because behind
//! a balancer without `TRUSTED_PROXIES` every client would share the balancer's address.

use crate::config::{Rate, RateLimits};
use crate::domain::UserId;
use crate::trusted_hash::IdMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Join,
    Charge,
    Hold,
}

/// A refused request: come back after this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry in {retry_after_secs} s")]
pub struct Limited {
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    limits: RateLimits,
    started: Instant,
    /// Theoretical arrival times (seconds since `started`), per user and scope and per client
    /// address. One lock for both, so a request is checked and recorded against both at once.
    tat: Mutex<Tats>,
}

#[derive(Default)]
struct Tats {
    /// By `IdHasher`: every join of a new fan inserts one, and SipHash over the key was a fifth
    /// of the limiter's time (`perf record`, `join`); user ids come from tokens we verified.
    users: IdMap<(Scope, UserId), f64>,
    /// SipHash (std's default): addresses are the one key a client can choose freely (an
    /// IPv6 prefix holds 2^64 of them), so the table must not be open to chosen collisions.
    addresses: HashMap<IpAddr, f64>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            started: Instant::now(),
            tat: Mutex::new(Tats::default()),
        }
    }

    /// The client address to limit: the peer, or the forwarded one behind a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if self.limits.trusted_proxies.contains(&peer)
            && let Some(last) = forwarded_for.and_then(|v| v.rsplit(',').next())
            && let Ok(ip) = last.trim().parse()
        {
            return ip;
        }
        peer
    }

    /// Admits one request of `user` from `address` in `scope`, or says how long to wait.
    pub fn check(&self, scope: Scope, user: UserId, address: IpAddr) -> Result<(), Limited> {
        let per_user = match scope {
            Scope::Join => self.limits.join_per_user,
            Scope::Charge => self.limits.charge_per_user,
            Scope::Hold => self.limits.hold_per_user,
        };
        let per_address = self.limits.per_address;
        if per_user.per_minute == 0 && per_address.per_minute == 0 {
            return Ok(());
        }
        let now = self.started.elapsed().as_secs_f64();
        let Ok(mut tat) = self.tat.lock() else {
            return Ok(());
        };
        let Tats { users, addresses } = &mut *tat;
        // Each subject's slot is found once; a new one starts at `now`, which is the same as
        // having none (a full allowance), so a refused request still costs no allowance.
        // Both are checked before either is recorded.
        let user_slot =
            (per_user.per_minute > 0).then(|| users.entry((scope, user)).or_insert(now));
        let user_next = match user_slot.as_deref() {
            Some(at) => Some(next_arrival(*at, now, per_user).map_err(|e| limited(scope, e))?),
            None => None,
        };
        if per_address.per_minute > 0 {
            let slot = addresses.entry(address).or_insert(now);
            *slot = next_arrival(*slot, now, per_address).map_err(|e| limited(scope, e))?;
        }
        if let (Some(slot), Some(next)) = (user_slot, user_next) {
            *slot = next;
        }
        Ok(())
    }

    /// Forgets subjects whose allowance is full again (keeps memory bounded).
    pub fn prune(&self) {
        let now = self.started.elapsed().as_secs_f64();
        if let Ok(mut tat) = self.tat.lock() {
            tat.users.retain(|_, at| *at > now);
            tat.addresses.retain(|_, at| *at > now);
        }
    }
}

/// GCRA: the subject's next theoretical arrival if one more request is let through now, or
/// the whole seconds to wait.
fn next_arrival(at: f64, now: f64, rate: Rate) -> Result<f64, u64> {
    let interval = 60.0 / f64::from(rate.per_minute);
    let tolerance = interval * f64::from(rate.burst.max(1) - 1);
    let at = at.max(now);
    if at - now > tolerance {
        return Err((at - now - tolerance).ceil().max(1.0) as u64);
    }
    Ok(at + interval)
}

fn limited(scope: Scope, retry_after_secs: u64) -> Limited {
    metrics::counter!("queuegate_rate_limited_total", "scope" => scope_label(scope)).increment(1);
    Limited { retry_after_secs }
}

fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::Join => "join",
        Scope::Charge => "charge",
        Scope::Hold => "hold",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32, per_address: Rate) -> RateLimiter {
        let r = Rate { per_minute, burst };
        RateLimiter::new(RateLimits {
            join_per_user: r,
            charge_per_user: r,
            hold_per_user: r,
            per_address,
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
        })
    }

    const OFF: Rate = Rate {
        per_minute: 0,
        burst: 0,
    };

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let l = limiter(60, 3, OFF);
        let u = UserId::new(1).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(Scope::Join, u, ip).is_ok());
        }
        match l.check(Scope::Join, u, ip) {
            Err(Limited { retry_after_secs }) => {
                assert!((1..=2).contains(&retry_after_secs))
            }
            other => panic!("{other:?}"),
        }
        // Scopes and users are independent.
        assert!(l.check(Scope::Hold, u, ip).is_ok());
        assert!(l.check(Scope::Join, UserId::new(2).unwrap(), ip).is_ok());
    }

    #[test]
    fn per_address_limits_span_users_and_zero_means_off() {
        let l = limiter(
            0,
            0,
            Rate {
                per_minute: 60,
                burst: 2,
            },
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(l.check(Scope::Join, UserId::new(1).unwrap(), ip).is_ok());
        assert!(l.check(Scope::Charge, UserId::new(2).unwrap(), ip).is_ok());
        assert!(l.check(Scope::Hold, UserId::new(3).unwrap(), ip).is_err());
        let off = limiter(0, 0, OFF);
        for _ in 0..1000 {
            assert!(off.check(Scope::Join, UserId::new(1).unwrap(), ip).is_ok());
        }
    }

    #[test]
    fn a_request_refused_by_one_limit_costs_no_allowance_of_the_other() {
        let l = limiter(
            60,
            2,
            Rate {
                per_minute: 60,
                burst: 1,
            },
        );
        let u = UserId::new(1).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(Scope::Join, u, a).is_ok());
        // The address is spent: refused, and the user's second request is not used up.
        assert!(l.check(Scope::Join, u, a).is_err());
        assert!(l.check(Scope::Join, u, b).is_ok());
        // Now the user's burst of two is spent, from any address.
        assert!(
            l.check(Scope::Join, u, "192.0.2.3".parse().unwrap())
                .is_err()
        );
        // And a user refused leaves the address's allowance alone.
        assert!(
            l.check(
                Scope::Join,
                UserId::new(2).unwrap(),
                "192.0.2.3".parse().unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let l = limiter(0, 0, OFF);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            l.client_address(proxy, Some("1.1.1.1, 203.0.113.9")),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(l.client_address(stranger, Some("203.0.113.9")), stranger);
        assert_eq!(l.client_address(proxy, Some("garbage")), proxy);
    }
}
