//! HS256 for the tokens this service mints, without a general-purpose JWT library on the hot
//! path.
//!
//! Every join verifies a user token and signs a queue token. `jsonwebtoken` does both through
//! machinery for any algorithm and header: it parses the header as JSON, decodes the claims
//! twice (once for its own checks), keys a new HMAC per call and joins strings. That was 15 %
//! of the gateway's CPU per join (`perf record`, `join` scenario). Our tokens have one shape:
//! the header `jsonwebtoken` writes for HS256, base64url claims, base64url HMAC-SHA256. Here
//! that shape is signed and checked directly, with the key's HMAC state computed once.
//!
//! Verifying is a fast path only: it answers "yes, signed by us, in our canonical form" or
//! "don't know". Anything else — another header, a bad signature, odd claims — goes to
//! `jsonwebtoken`, which accepts or refuses it exactly as before and says precisely why. A test
//! checks that signing here is byte-for-byte what `jsonwebtoken::encode` produces, and another
//! that the claims are written (`Minted::to_json`) as serde writes them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `{"typ":"JWT","alg":"HS256"}` — the header `jsonwebtoken` writes for HS256 — in base64url.
const HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

pub(super) struct Hs256 {
    /// Keyed once: cloning it skips hashing the padded key on every token.
    keyed: Hmac<Sha256>,
}

impl Hs256 {
    pub(super) fn new(secret: &[u8]) -> Self {
        Hs256 {
            // HMAC takes keys of any length (long ones are hashed first); this cannot fail.
            keyed: Hmac::<Sha256>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length")),
        }
    }

    /// A signed token carrying `claims` (the tests' way; the service writes its claims with
    /// `Minted::to_json`, the same bytes).
    #[cfg(test)]
    pub(super) fn sign(&self, claims: &impl serde::Serialize) -> Result<String, serde_json::Error> {
        serde_json::to_vec(claims).map(|json| self.sign_json(&json))
    }

    /// A signed token carrying claims already written as JSON.
    pub(super) fn sign_json(&self, json: &[u8]) -> String {
        let mut token = String::with_capacity(HEADER.len() + json.len() * 4 / 3 + 48);
        token.push_str(HEADER);
        token.push('.');
        B64.encode_string(json, &mut token);
        let mut mac = self.keyed.clone();
        mac.update(token.as_bytes());
        token.push('.');
        B64.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// The decoded claims of a token in our canonical form whose signature verifies; `None`
    /// for anything else (the caller asks the general decoder then).
    pub(super) fn verified_payload(&self, token: &str) -> Option<Vec<u8>> {
        let (message, signature) = token.rsplit_once('.')?;
        let payload = message.strip_prefix(HEADER)?.strip_prefix('.')?;
        let mut sig = [0u8; 36];
        let n = B64.decode_slice(signature, &mut sig).ok()?;
        let mut mac = self.keyed.clone();
        mac.update(message.as_bytes());
        // Constant-time comparison; a wrong length fails too.
        mac.verify_slice(&sig[..n]).ok()?;
        B64.decode(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signs_exactly_what_jsonwebtoken_signs() {
        let hs = Hs256::new(SECRET);
        for claims in [
            json!({"kind": "user", "iss": "queuegate", "sub": "7", "iat": 1, "exp": 2}),
            json!({"kind": "queue", "iss": "queuegate", "sub": "123456789", "cid": 3,
                   "qid": 18446744073709551615_u64, "seq": 42, "ep": "e\"1", "iat": 1, "exp": 9}),
            json!({"x": "ü€ and a longer string so the base64 has every remainder"}),
        ] {
            let ours = hs.sign(&claims).unwrap();
            let theirs = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(
                hs.verified_payload(&ours).unwrap(),
                serde_json::to_vec(&claims).unwrap()
            );
        }
    }

    #[test]
    fn anything_but_our_signed_canonical_form_is_not_vouched_for() {
        let hs = Hs256::new(SECRET);
        let token = hs.sign(&json!({"sub": "1"})).unwrap();
        assert!(hs.verified_payload(&token).is_some());
        // Another key.
        assert!(
            Hs256::new(b"another-secret")
                .verified_payload(&token)
                .is_none()
        );
        // A changed payload, signature, or a truncated or extended token.
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let other_payload = hs.sign(&json!({"sub": "2"})).unwrap();
        let (other_msg, _) = other_payload.rsplit_once('.').unwrap();
        assert!(hs.verified_payload(&format!("{other_msg}.{sig}")).is_none());
        let mut flipped = sig.to_string();
        flipped.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        assert!(hs.verified_payload(&format!("{msg}.{flipped}")).is_none());
        assert!(hs.verified_payload(&token[..token.len() - 1]).is_none());
        assert!(hs.verified_payload(&format!("{token}A")).is_none());
        assert!(hs.verified_payload(&format!("{msg}.")).is_none());
        assert!(hs.verified_payload(&format!("{msg}.{sig}.{sig}")).is_none());
        // Another header, even one that is valid HS256 (the general decoder handles those).
        let kid = jsonwebtoken::encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &json!({"sub": "1"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(hs.verified_payload(&kid).is_none());
        assert!(hs.verified_payload("").is_none());
        assert!(hs.verified_payload("...").is_none());
    }
}
