//! Signed tokens: `user`, `queue` and `access` JWTs (HS256, shared secret across instances).
//!
//! Every route accepts exactly one kind, so the kind is a claim that is checked on every decode;
//! the algorithm is pinned so `alg: none` or an RS/HS confusion can never verify. A token proves
//! who the bearer is and what they were granted at signing time; whether an access grant is
//! *still* live is a separate question answered by the queue store (see `gate.rs`).

mod verified;

use crate::domain::{ConcertId, LineId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
    #[error("could not sign a token: {0}")]
    Signing(String),
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
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
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
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified_queue: Verified::new(),
            verified_access: Verified::new(),
        }
    }

    fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    fn verify(&self, token: &str, kind: Kind) -> Result<Claims, TokenError> {
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
        if data.claims.kind != kind {
            return Err(TokenError::WrongKind {
                expected: kind,
                found: data.claims.kind,
            });
        }
        Ok(data.claims)
    }

    pub fn mint_user(&self, user_id: UserId) -> Result<String, TokenError> {
        let now = now_secs();
        self.sign(&Claims {
            kind: Kind::User,
            iss: ISSUER.into(),
            sub: user_id.to_string(),
            cid: None,
            qid: None,
            seq: None,
            ep: None,
            jti: None,
            iat: now,
            exp: now + USER_TOKEN_TTL_SECS,
        })
    }

    pub fn mint_queue(&self, t: &QueueToken) -> Result<String, TokenError> {
        let now = now_secs();
        self.sign(&Claims {
            kind: Kind::Queue,
            iss: ISSUER.into(),
            sub: t.user_id.to_string(),
            cid: Some(t.concert_id.get()),
            qid: Some(t.queue_id),
            seq: Some(t.seq),
            ep: Some(t.epoch.to_string()),
            jti: None,
            iat: now,
            exp: now + QUEUE_TOKEN_TTL_SECS,
        })
    }

    pub fn mint_access(&self, t: &AccessToken) -> Result<String, TokenError> {
        self.sign(&Claims {
            kind: Kind::Access,
            iss: ISSUER.into(),
            sub: t.user_id.to_string(),
            cid: Some(t.concert_id.get()),
            qid: Some(t.queue_id),
            seq: Some(t.seq),
            ep: None,
            jti: None,
            iat: now_secs(),
            exp: t.exp,
        })
    }

    /// A single-use ticket for the event stream of `q`'s place, valid for a few seconds.
    pub fn mint_stream_ticket(&self, q: &QueueToken) -> Result<String, TokenError> {
        let now = now_secs();
        self.sign(&Claims {
            kind: Kind::Stream,
            iss: ISSUER.into(),
            sub: q.user_id.to_string(),
            cid: Some(q.concert_id.get()),
            qid: Some(q.queue_id),
            seq: Some(q.seq),
            ep: None,
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
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
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef")
    }

    fn uid(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    #[test]
    fn each_kind_round_trips_and_only_verifies_as_itself() {
        let k = keys();
        let user = k.mint_user(uid(7)).unwrap();
        assert_eq!(k.verify_user(&user).unwrap().user_id, uid(7));
        assert!(k.verify_queue(&user).is_err());
        assert!(k.verify_access(&user).is_err());

        let q = QueueToken {
            user_id: uid(7),
            concert_id: ConcertId::new(3).unwrap(),
            queue_id: 77,
            seq: 42,
            epoch: "e1".into(),
        };
        let qt = k.mint_queue(&q).unwrap();
        assert_eq!(k.verify_queue(&qt).unwrap(), q);
        assert_eq!(k.verify_queue(&qt).unwrap(), q, "again, from the cache");
        assert!(k.verify_user(&qt).is_err());
        // A remembered token does not make a tampered copy acceptable.
        let mut tampered = qt.clone();
        tampered.pop();
        assert!(k.verify_queue(&tampered).is_err());

        let a = AccessToken {
            user_id: uid(7),
            concert_id: ConcertId::new(3).unwrap(),
            queue_id: 77,
            seq: 42,
            exp: now_secs() + 60,
        };
        let at = k.mint_access(&a).unwrap();
        assert_eq!(k.verify_access(&at).unwrap(), a);
        assert_eq!(k.verify_access(&at).unwrap(), a, "again, from the cache");
        let mut tampered = at.clone();
        tampered.pop();
        assert!(k.verify_access(&tampered).is_err());
        assert!(k.verify_queue(&at).is_err());

        let ticket = k.mint_stream_ticket(&q).unwrap();
        let t = k.verify_stream_ticket(&ticket).unwrap();
        assert_eq!((t.user_id, t.line, t.seq), (q.user_id, q.line(), q.seq));
        assert_ne!(
            t.jti,
            k.verify_stream_ticket(&k.mint_stream_ticket(&q).unwrap())
                .unwrap()
                .jti,
            "every ticket is unique"
        );
        assert!(k.verify_queue(&ticket).is_err());
    }

    #[test]
    fn forged_expired_and_unsigned_tokens_fail() {
        let k = keys();
        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        let forged = other.mint_user(uid(1)).unwrap();
        assert!(k.verify_user(&forged).is_err());

        let expired = k
            .mint_access(&AccessToken {
                user_id: uid(1),
                concert_id: ConcertId::new(1).unwrap(),
                queue_id: 5,
                seq: 1,
                exp: now_secs() - 60,
            })
            .unwrap();
        assert_eq!(
            k.verify_access(&expired),
            Err(TokenError::Expired("access"))
        );
        assert_eq!(k.verify_user(&forged), Err(TokenError::BadSignature));

        // alg: none with a plausible payload.
        use base64_like::encode;
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = now_secs() + 600;
        let payload = encode(
            format!(r#"{{"kind":"user","iss":"queuegate","sub":"1","iat":1,"exp":{exp}}}"#)
                .as_bytes(),
        );
        assert!(k.verify_user(&format!("{header}.{payload}.")).is_err());
        assert_eq!(k.verify_user("garbage"), Err(TokenError::Malformed));
        let queue = k
            .mint_queue(&QueueToken {
                user_id: uid(1),
                concert_id: ConcertId::new(1).unwrap(),
                queue_id: 5,
                seq: 1,
                epoch: "e".into(),
            })
            .unwrap();
        assert_eq!(
            k.verify_access(&queue),
            Err(TokenError::WrongKind {
                expected: Kind::Access,
                found: Kind::Queue
            })
        );
        assert!(k.verify_user("").is_err());
    }

    /// Minimal URL-safe base64 without padding, only for building hostile test tokens.
    mod base64_like {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn encode(input: &[u8]) -> String {
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
