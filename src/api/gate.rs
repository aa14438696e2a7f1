//! Who may call what: the checks in front of every protected route, and the only place a
//! bearer token is read and verified.
//!
//! The booking gate is two questions. *Is the token genuine?* — a signature check, no I/O.
//! *Is the admission it names still live?* — one read-only script on the queue store, because
//! paying, leaving and expiry all end an admission there, and a token must stop working at once.

use super::error::ApiError;
use crate::config::Secret;
use crate::domain::{ConcertId, UserId};
use crate::gateway::confirmed::{ConfirmedGrants, Lookup};
use crate::http::Req;
use crate::queue::model::{Access, Ended};
use crate::queue::service::Queue;
use crate::tokens::{AccessToken, QueueToken, StreamTicket, TokenKeys, UserToken};
use std::sync::Arc;
use std::time::Instant;

/// Where a gateway grant came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantSource {
    Bearer,
    Cookie,
}

/// What a visitor to a protected path presented (see `Gate::gateway_grant`).
#[derive(Debug)]
pub enum GatewayGrant {
    /// A live admission to the guarding line.
    Live(AccessToken, GrantSource),
    /// Nothing at all.
    Missing,
    /// Something that does not admit (forged, expired, another line, revoked), and why.
    Refused(String, GrantSource),
}

pub struct Gate {
    tokens: Arc<TokenKeys>,
    queue: Arc<Queue>,
    admin_token: Option<Secret>,
}

fn bearer(req: &Req) -> Result<&str, ApiError> {
    req.bearer()
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))
}

impl Gate {
    pub fn new(tokens: Arc<TokenKeys>, queue: Arc<Queue>, admin_token: Option<Secret>) -> Self {
        Gate {
            tokens,
            queue,
            admin_token,
        }
    }

    /// A user token, for wallet and queue-joining routes.
    pub fn user(&self, req: &Req) -> Result<UserToken, ApiError> {
        Ok(self.tokens.verify_user(bearer(req)?)?)
    }

    /// A user token that must belong to `owner` (another user's wallet: 403).
    pub fn user_is(&self, req: &Req, owner: UserId) -> Result<UserToken, ApiError> {
        let t = self.user(req)?;
        if t.user_id != owner {
            return Err(ApiError::forbidden("this is another user's wallet"));
        }
        Ok(t)
    }

    /// A queue token from the `Authorization` header (never from a URL: queue tokens are
    /// long-lived and redeem for the user's access).
    pub fn queue(&self, req: &Req) -> Result<QueueToken, ApiError> {
        Ok(self.tokens.verify_queue(bearer(req)?)?)
    }

    /// What opens an event stream: the queue token in `Authorization`, or — for a browser's
    /// EventSource, which cannot send headers — a single-use stream ticket in `?ticket=`.
    pub fn stream_opener(&self, req: &Req) -> Result<StreamOpener, ApiError> {
        if let Some(t) = req.bearer() {
            return Ok(StreamOpener::QueueToken(self.tokens.verify_queue(t)?));
        }
        if req.query_param("token").is_some() {
            return Err(ApiError::unauthorized(
                "queue tokens are not accepted in URLs; send it in Authorization, or ask POST /v1/queue/events/ticket for a stream ticket",
            ));
        }
        match req.query_param("ticket") {
            Some(t) if !t.is_empty() => {
                Ok(StreamOpener::Ticket(self.tokens.verify_stream_ticket(t)?))
            }
            _ => Err(ApiError::unauthorized(
                "missing queue token (Authorization: Bearer …) or stream ticket (?ticket=…)",
            )),
        }
    }

    /// A queue token a client kept and sends back in a body (to restore a lost place): it must
    /// be genuine and name this user and concert.
    pub fn kept_queue_token(
        &self,
        token: &str,
        user: UserId,
        concert: ConcertId,
    ) -> Result<QueueToken, ApiError> {
        let q = self
            .tokens
            .verify_queue(token)
            .map_err(|e| ApiError::validation("queue_token", e.to_string()))?;
        if q.user_id != user || q.concert_id != concert {
            return Err(ApiError::validation(
                "queue_token",
                "belongs to another user or concert",
            ));
        }
        Ok(q)
    }

    /// The booking gate: a genuine access token whose admission is live right now.
    pub async fn access(&self, req: &Req) -> Result<AccessToken, ApiError> {
        Ok(self.access_bearer(req).await?.0)
    }

    /// The booking gate's check, also returning the bearer token as sent (gateway mode stores
    /// it in the grant cookie).
    pub async fn access_bearer<'r>(
        &self,
        req: &'r Req,
    ) -> Result<(AccessToken, &'r str), ApiError> {
        let raw = bearer(req)?;
        let t = self.tokens.verify_access(raw)?;
        match self.queue.check_access(&t).await? {
            Access::Live => Ok((t, raw)),
            Access::Ended(why) => Err(ApiError::TokenRevoked(revoked_because(why).into())),
        }
    }

    /// Gateway mode: the grant a visitor presents for a protected path — an access token in
    /// `Authorization: Bearer` (API clients) or in the grant cookie `cookie` (browsers) — and
    /// whether it admits to `concert` right now. Same two questions as the booking gate, except
    /// that a grant the store confirmed a moment ago is taken from `memory`, which forgets it
    /// as soon as any instance announces its end (`gateway::confirmed`); so paying, leaving or
    /// the admission's end still stops forwarding at once.
    ///
    /// A bearer token that is not one of our access tokens may be the origin's own credential:
    /// it is then left alone and the cookie decides. `Err` only when the queue store cannot
    /// answer (fail closed: nobody passes while we cannot tell).
    pub async fn gateway_grant(
        &self,
        req: &Req,
        cookie: &str,
        line: ConcertId,
        memory: &ConfirmedGrants,
    ) -> Result<GatewayGrant, ApiError> {
        let from_bearer = req.bearer().map(|t| {
            (
                self.tokens.verify_access(t).map_err(|e| e.to_string()),
                GrantSource::Bearer,
            )
        });
        let presented = match from_bearer {
            Some((Ok(t), source)) => Some((Ok(t), source)),
            other => match req.cookie(cookie).filter(|c| !c.is_empty()) {
                Some(c) => Some((self.cookie_grant(c, line), GrantSource::Cookie)),
                None => other,
            },
        };
        let Some((verified, source)) = presented else {
            return Ok(GatewayGrant::Missing);
        };
        let t = match verified {
            Ok(t) => t,
            Err(reason) => return Ok(GatewayGrant::Refused(reason, source)),
        };
        if t.concert_id != line {
            return Ok(GatewayGrant::Refused(
                "this access grant is for another concert".into(),
                source,
            ));
        }
        let ticket = match memory.lookup(t.user_id, t.seq, Instant::now()) {
            Lookup::Live => {
                grant_answered_by("memory");
                return Ok(GatewayGrant::Live(t, source));
            }
            Lookup::Ask(ticket) => ticket,
        };
        grant_answered_by("store");
        match self.queue.check_access(&t).await? {
            Access::Live => {
                if let Some(ticket) = ticket {
                    memory.confirmed(ticket, t.time_left(), Instant::now());
                }
                Ok(GatewayGrant::Live(t, source))
            }
            Access::Ended(why) => Ok(GatewayGrant::Refused(revoked_because(why).into(), source)),
        }
    }

    /// The grant cookie's grant for `line` (it carries one per line the visitor was admitted
    /// to): the first that verifies and is for `line`; otherwise why none is.
    fn cookie_grant(&self, value: &str, line: ConcertId) -> Result<AccessToken, String> {
        let mut why = None;
        for raw in crate::gateway::grant::grants(value) {
            match self.tokens.verify_access(raw) {
                Ok(t) if t.concert_id == line => return Ok(t),
                Ok(_) => {}
                Err(e) => {
                    why.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Err(why.unwrap_or_else(|| "this access grant is for another concert".into()))
    }

    /// `raw` if it is a genuine, unexpired access token (whether its admission is still live is
    /// not asked): what a grant cookie keeps of the other lines' grants when one line's changes.
    pub fn genuine_access(&self, raw: &str) -> Option<AccessToken> {
        self.tokens.verify_access(raw).ok()
    }

    /// A genuine access token, live or not (replays of a payment that revoked it).
    pub fn access_claims(&self, req: &Req) -> Result<AccessToken, ApiError> {
        Ok(self.tokens.verify_access(bearer(req)?)?)
    }

    /// An access token is good for one concert only.
    pub fn same_concert(t: &AccessToken, concert: ConcertId) -> Result<(), ApiError> {
        if t.concert_id == concert {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this access token is for another concert",
            ))
        }
    }

    /// The admin bearer token. With `ADMIN_TOKEN` unset the admin API is off.
    pub fn admin(&self, req: &Req) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_token else {
            return Err(ApiError::forbidden(
                "the admin API is disabled (ADMIN_TOKEN is not set)",
            ));
        };
        if constant_time_eq(bearer(req)?.as_bytes(), expected.expose().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("invalid admin token"))
        }
    }
}

/// What opens an event stream.
pub enum StreamOpener {
    QueueToken(QueueToken),
    Ticket(StreamTicket),
}

/// `queuegate_gateway_grant_checks_total{answered_by}`: how many live-grant questions the
/// memory answered, and how many went to the store.
fn grant_answered_by(by: &'static str) {
    crate::metrics::count_hot("queuegate_gateway_grant_checks_total", "answered_by", by);
}

/// Says why an access token stopped working, and what the holder can do.
fn revoked_because(why: Ended) -> &'static str {
    match why {
        Ended::Paid => {
            "this access token was revoked because you paid; join the queue again to book more"
        }
        Ended::Left => "this access token was revoked because you left the queue",
        Ended::Expired => "your booking window is over; join the queue again",
        Ended::Superseded => {
            "this access token belongs to an earlier admission; use the newest one"
        }
        Ended::Unknown => "this access token no longer admits you; join the queue again",
    }
}

/// Compares without an early exit, so response timing does not leak how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-124"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
