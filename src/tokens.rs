//! Signed tokens: `user`, `queue` and `access` JWTs (HS256, shared secret across instances).
//!
//! Every route accepts exactly one kind, so the kind is a claim that is checked on every decode;
//! the algorithm is pinned so `alg: none` or an RS/HS confusion can never verify. A token proves
//! who the bearer is and what they were granted at signing time; whether an access grant is
//! *still* live is a separate question answered by the queue store (see `gate.rs`).

mod hs256;
mod verified;

use crate::domain::{ConcertId, LineId, UserId};
use crate::json_out::ObjectWriter;
use hs256::Hs256;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use verified::Verified;

const ISSUER: &str = "queuegate";
/// Clock slack between instances when checking `exp`.
const LEEWAY_SECS: u64 = 5;
/// User tokens identify a person across sales; long-lived like a session cookie.
pub const USER_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Queue tokens outlive a long sale so a user can recover their place after a data loss.
pub const QUEUE_TOKEN_TTL_SECS: u64 = 2 * 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Queue,
    Access,
    /// A short-lived, single-use ticket that opens one event stream (an EventSource cannot
    /// send headers, and a long-lived token must never sit in a URL).
    Stream,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Queue => "queue",
            Kind::Access => "access",
            Kind::Stream => "stream",
        }
    }
}

/// Why a token was not accepted. Each reason says what the holder can do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the {0} token has expired")]
    Expired(&'static str),
    #[error("the token is malformed (not a JWT issued by this service)")]
    Malformed,
    #[error("the token's signature does not verify (forged, or signed with another key)")]
    BadSignature,
    #[error("this route needs a {} token, but this is a {} token", .expected.as_str(), .found.as_str())]
    WrongKind { expected: Kind, found: Kind },
    #[error("the token lacks the claims a {} token carries", .0.as_str())]
    MissingClaims(Kind),
}

/// Claims of every kind in one flat shape; the per-kind views below pick what they need.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    kind: Kind,
    iss: String,
    /// The user id, as a string like every JWT subject.
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cid: Option<u64>,
    /// The line's random id (see `LineId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// The queue store's epoch when the place was issued (detects a store that lost its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ep: Option<String>,
    /// A stream ticket's unique id (single use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    iat: u64,
    exp: u64,
    /// Whether `nbf` / `aud` are present (even as `null`). Never in our tokens; read only so
    /// that the fast path (see `fast_claims`) leaves such a token to the general decoder,
    /// which checks them.
    #[serde(
        default,
        skip_serializing,
        rename = "nbf",
        deserialize_with = "present"
    )]
    has_nbf: bool,
    #[serde(
        default,
        skip_serializing,
        rename = "aud",
        deserialize_with = "present"
    )]
    has_aud: bool,
}

/// The claims of a token this service signs, borrowing what it is minted for. Written as JSON
/// directly: building `Claims` first meant three allocations (the issuer copied, the user id
/// through `fmt`, the epoch copied) for every join and admission (~230 instructions of a join
/// besides them, callgrind, BENCHMARKS.md). The bytes are serde's for the equivalent `Claims` (property
/// test), which are what `jsonwebtoken` signs.
struct Minted<'a> {
    kind: Kind,
    sub: UserId,
    cid: Option<u64>,
    qid: Option<u64>,
    seq: Option<u64>,
    ep: Option<&'a str>,
    jti: Option<&'a str>,
    iat: u64,
    exp: u64,
}

impl Minted<'_> {
    fn to_json(&self) -> Vec<u8> {
        let mut w = ObjectWriter::with_capacity(192);
        w.str("kind", self.kind.as_str())
            .str("iss", ISSUER)
            .u64_as_str("sub", self.sub.get())
            .u64_if("cid", self.cid)
            .u64_if("qid", self.qid)
            .u64_if("seq", self.seq)
            .str_if("ep", self.ep)
            .str_if("jti", self.jti)
            .u64("iat", self.iat)
            .u64("exp", self.exp);
        w.finish()
    }
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserToken {
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueToken {
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub queue_id: u64,
    pub seq: u64,
    pub epoch: std::sync::Arc<str>,
}

impl QueueToken {
    pub fn line(&self) -> LineId {
        LineId {
            concert: self.concert_id,
            queue_id: self.queue_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub queue_id: u64,
    /// The arrival number of the admission this token belongs to: a later admission of the
    /// same user has another `seq`, so an old token cannot ride on a new admission.
    pub seq: u64,
    /// Admission end, seconds since the epoch.
    pub exp: u64,
}

impl AccessToken {
    /// Time left until the token expires (its `exp` is never after the admission's end).
    pub fn time_left(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::Duration::from_secs(self.exp).saturating_sub(now)
    }

    pub fn line(&self) -> LineId {
        LineId {
            concert: self.concert_id,
            queue_id: self.queue_id,
        }
    }
}

/// A verified stream ticket: which place's events it opens, and its single-use id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTicket {
    pub user_id: UserId,
    pub line: LineId,
    pub seq: u64,
    pub jti: String,
}

/// How long a stream ticket may wait to be used.
pub const STREAM_TICKET_TTL_SECS: u64 = 30;

pub struct TokenKeys {
    /// Signs every token and verifies our own canonical ones (see `hs256`).
    hs256: Hs256,
    /// The general decoder, for every token the fast path does not vouch for: it refuses
    /// them with the precise reason (or accepts a valid token in another form).
    decoding: DecodingKey,
    validation: Validation,
    // User tokens are not cached: a fan presents one a handful of times (a join, a top-up),
    // where a queue token comes back with every poll. Remembering each one cost a join two
    // cache misses (the lookup and the insert into a table of 200,000) for a verify that takes
    // about as long with SHA-NI (`perf record`, `join` scenario, BENCHMARKS.md).
    /// Queue tokens verified before: a fan polls with the same token for hours, so its
    /// signature is checked once per instance, not per poll (see `Verified`).
    verified_queue: Verified<QueueToken>,
    /// Access tokens verified before: in gateway mode every page, image and API call of an
    /// admitted visitor carries the same grant.
    verified_access: Verified<AccessToken>,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        // Instances share a clock only roughly; a few seconds of slack is plenty.
        validation.leeway = LEEWAY_SECS;
        TokenKeys {
            hs256: Hs256::new(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified_queue: Verified::new(),
            verified_access: Verified::new(),
        }
    }

    /// Signs `claims` and remembers the token as verified with the claims `t` in `cache`: the
    /// holder presents it next (the first poll after joining, the first forward after
    /// admission), and its claims are already known.
    fn sign_remembered<T: Clone>(&self, claims: &Minted<'_>, cache: &Verified<T>, t: T) -> String {
        let token = self.sign(claims);
        cache.remember(&token, t, claims.exp);
        token
    }

    fn sign(&self, claims: &Minted<'_>) -> String {
        self.hs256.sign_json(&claims.to_json())
    }

    fn verify(&self, token: &str, kind: Kind) -> Result<Claims, TokenError> {
        let claims = match self.fast_claims(token) {
            Some(c) => c,
            None => self.general_claims(token, kind)?,
        };
        if claims.kind != kind {
            return Err(TokenError::WrongKind {
                expected: kind,
                found: claims.kind,
            });
        }
        Ok(claims)
    }

    /// The claims of a token we signed in our canonical form and that passes every check the
    /// general decoder makes (`validation`); `None` leaves the token to the general decoder.
    /// Accepts nothing the general decoder would refuse: the same MAC, the same header, `exp`
    /// and `iss` checked alike, and tokens with `nbf` or `aud` (never ours) left to it.
    fn fast_claims(&self, token: &str) -> Option<Claims> {
        let payload = self.hs256.verified_payload(token)?;
        let c: Claims = serde_json::from_slice(&payload).ok()?;
        let live = c.exp >= now_secs().saturating_sub(LEEWAY_SECS);
        (live && c.iss == ISSUER && !c.has_nbf && !c.has_aud).then_some(c)
    }

    fn general_claims(&self, token: &str, kind: Kind) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind as E;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                E::ExpiredSignature => TokenError::Expired(kind.as_str()),
                E::InvalidSignature => TokenError::BadSignature,
                // A well-formed token of ours with the wrong claims (issuer, kind, subject).
                E::InvalidIssuer | E::MissingRequiredClaim(_) | E::ImmatureSignature => {
                    TokenError::MissingClaims(kind)
                }
                _ => TokenError::Malformed,
            })?;
        Ok(data.claims)
    }

    /// Signs a user token.
    pub fn mint_user(&self, user_id: UserId) -> String {
        let now = now_secs();
        let claims = Minted {
            kind: Kind::User,
            sub: user_id,
            cid: None,
            qid: None,
            seq: None,
            ep: None,
            jti: None,
            iat: now,
            exp: now + USER_TOKEN_TTL_SECS,
        };
        self.sign(&claims)
    }

    /// Signs a queue token (remembered as verified, see `sign_remembered`).
    pub fn mint_queue(&self, t: &QueueToken) -> String {
        let now = now_secs();
        let claims = Minted {
            kind: Kind::Queue,
            sub: t.user_id,
            cid: Some(t.concert_id.get()),
            qid: Some(t.queue_id),
            seq: Some(t.seq),
            ep: Some(&t.epoch),
            jti: None,
            iat: now,
            exp: now + QUEUE_TOKEN_TTL_SECS,
        };
        self.sign_remembered(&claims, &self.verified_queue, t.clone())
    }

    /// Signs an access token (remembered as verified, see `sign_remembered`).
    pub fn mint_access(&self, t: &AccessToken) -> String {
        let claims = Minted {
            kind: Kind::Access,
            sub: t.user_id,
            cid: Some(t.concert_id.get()),
            qid: Some(t.queue_id),
            seq: Some(t.seq),
            ep: None,
            jti: None,
            iat: now_secs(),
            exp: t.exp,
        };
        self.sign_remembered(&claims, &self.verified_access, t.clone())
    }

    /// A single-use ticket for the event stream of `q`'s place, valid for a few seconds.
    pub fn mint_stream_ticket(&self, q: &QueueToken) -> String {
        let now = now_secs();
        let mut jti = uuid::Uuid::encode_buffer();
        self.sign(&Minted {
            kind: Kind::Stream,
            sub: q.user_id,
            cid: Some(q.concert_id.get()),
            qid: Some(q.queue_id),
            seq: Some(q.seq),
            ep: None,
            jti: Some(uuid::Uuid::new_v4().simple().encode_lower(&mut jti)),
            iat: now,
            exp: now + STREAM_TICKET_TTL_SECS,
        })
    }

    pub fn verify_stream_ticket(&self, token: &str) -> Result<StreamTicket, TokenError> {
        let c = self.verify(token, Kind::Stream)?;
        match (c.cid.and_then(ConcertId::new), c.qid, c.seq, c.jti) {
            (Some(concert), Some(queue_id), Some(seq), Some(jti)) => Ok(StreamTicket {
                user_id: user_id(c.sub, Kind::Stream)?,
                line: LineId { concert, queue_id },
                seq,
                jti,
            }),
            _ => Err(TokenError::MissingClaims(Kind::Stream)),
        }
    }

    /// Verifies a user token, every time (see `TokenKeys`).
    pub fn verify_user(&self, token: &str) -> Result<UserToken, TokenError> {
        let c = self.verify(token, Kind::User)?;
        Ok(UserToken {
            user_id: user_id(c.sub, Kind::User)?,
        })
    }

    /// Verifies a queue token (once per instance and token: see `Verified`).
    pub fn verify_queue(&self, token: &str) -> Result<QueueToken, TokenError> {
        self.verified_queue.get_or_verify(token, || {
            let c = self.verify(token, Kind::Queue)?;
            let exp = c.exp;
            match (c.cid.and_then(ConcertId::new), c.qid, c.seq, c.ep) {
                (Some(concert_id), Some(queue_id), Some(seq), Some(epoch)) => Ok((
                    QueueToken {
                        user_id: user_id(c.sub, Kind::Queue)?,
                        concert_id,
                        queue_id,
                        seq,
                        epoch: epoch.into(),
                    },
                    exp,
                )),
                _ => Err(TokenError::MissingClaims(Kind::Queue)),
            }
        })
    }

    /// Verifies an access token (once per instance and token: see `Verified`).
    pub fn verify_access(&self, token: &str) -> Result<AccessToken, TokenError> {
        self.verified_access.get_or_verify(token, || {
            let c = self.verify(token, Kind::Access)?;
            match (c.cid.and_then(ConcertId::new), c.qid, c.seq) {
                (Some(concert_id), Some(queue_id), Some(seq)) => Ok((
                    AccessToken {
                        user_id: user_id(c.sub, Kind::Access)?,
                        concert_id,
                        queue_id,
                        seq,
                        exp: c.exp,
                    },
                    c.exp,
                )),
                _ => Err(TokenError::MissingClaims(Kind::Access)),
            }
        })
    }
}

fn user_id(sub: String, kind: Kind) -> Result<UserId, TokenError> {
    UserId::from_path(&sub).ok_or(TokenError::MissingClaims(kind))
}

#[cfg(test)]
mod tests;
