//! Tests of the token kinds, the fast path's agreement with the general decoder, and forged
//! tokens.
use super::*;

fn keys() -> TokenKeys {
    TokenKeys::new(b"0123456789abcdef0123456789abcdef")
}

fn uid(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

/// `token` with one character of its payload changed and its signature kept.
fn other_payload(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = &mut parts[1];
    let last = payload.pop().unwrap();
    payload.push(if last == 'A' { 'B' } else { 'A' });
    parts.join(".")
}

#[test]
fn each_kind_round_trips_and_only_verifies_as_itself() {
    let k = keys();
    let user = k.mint_user(uid(7));
    assert_eq!(k.verify_user(&user).unwrap().user_id, uid(7));
    assert_eq!(keys().verify_user(&user).unwrap().user_id, uid(7));
    assert!(k.verify_user(&other_payload(&user)).is_err());
    assert!(k.verify_queue(&user).is_err());
    assert!(k.verify_access(&user).is_err());

    let q = QueueToken {
        user_id: uid(7),
        concert_id: ConcertId::new(3).unwrap(),
        queue_id: 77,
        seq: 42,
        epoch: "e1".into(),
    };
    let qt = k.mint_queue(&q);
    assert_eq!(k.verify_queue(&qt).unwrap(), q);
    assert_eq!(k.verify_queue(&qt).unwrap(), q, "again, from the cache");
    // The minting instance remembered it; another instance checks it in full.
    assert_eq!(keys().verify_queue(&qt).unwrap(), q);
    assert!(k.verify_user(&qt).is_err());
    // A remembered token does not make a tampered copy acceptable: neither a cut signature
    // nor another payload under the same signature.
    let mut tampered = qt.clone();
    tampered.pop();
    assert!(k.verify_queue(&tampered).is_err());
    assert!(k.verify_queue(&other_payload(&qt)).is_err());

    let a = AccessToken {
        user_id: uid(7),
        concert_id: ConcertId::new(3).unwrap(),
        queue_id: 77,
        seq: 42,
        exp: now_secs() + 60,
    };
    let at = k.mint_access(&a);
    assert_eq!(k.verify_access(&at).unwrap(), a);
    assert_eq!(k.verify_access(&at).unwrap(), a, "again, from the cache");
    assert_eq!(keys().verify_access(&at).unwrap(), a);
    let mut tampered = at.clone();
    tampered.pop();
    assert!(k.verify_access(&tampered).is_err());
    assert!(k.verify_access(&other_payload(&at)).is_err());
    assert!(k.verify_queue(&at).is_err());

    let ticket = k.mint_stream_ticket(&q);
    let t = k.verify_stream_ticket(&ticket).unwrap();
    assert_eq!((t.user_id, t.line, t.seq), (q.user_id, q.line(), q.seq));
    assert_ne!(
        t.jti,
        k.verify_stream_ticket(&k.mint_stream_ticket(&q))
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
    let forged = other.mint_user(uid(1));
    assert!(k.verify_user(&forged).is_err());

    let expired = k.mint_access(&AccessToken {
        user_id: uid(1),
        concert_id: ConcertId::new(1).unwrap(),
        queue_id: 5,
        seq: 1,
        exp: now_secs() - 60,
    });
    assert_eq!(
        k.verify_access(&expired),
        Err(TokenError::Expired("access"))
    );
    assert_eq!(k.verify_user(&forged), Err(TokenError::BadSignature));

    // alg: none with a plausible payload.
    let encode = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let exp = now_secs() + 600;
    let payload = encode(
        format!(r#"{{"kind":"user","iss":"queuegate","sub":"1","iat":1,"exp":{exp}}}"#).as_bytes(),
    );
    assert!(k.verify_user(&format!("{header}.{payload}.")).is_err());
    assert_eq!(k.verify_user("garbage"), Err(TokenError::Malformed));
    let queue = k.mint_queue(&QueueToken {
        user_id: uid(1),
        concert_id: ConcertId::new(1).unwrap(),
        queue_id: 5,
        seq: 1,
        epoch: "e".into(),
    });
    assert_eq!(
        k.verify_access(&queue),
        Err(TokenError::WrongKind {
            expected: Kind::Access,
            found: Kind::Queue
        })
    );
    assert!(k.verify_user("").is_err());
}

/// The fast path (`fast_claims`) never changes a verdict: for tokens of every sort, signed
/// with our key, `verify` answers what the general decoder alone answers.
#[test]
fn the_fast_path_agrees_with_the_general_decoder() {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    let k = keys();
    let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    let now = now_secs();
    let plain = Header::new(Algorithm::HS256);
    let kid = Header {
        kid: Some("k1".into()),
        ..Header::new(Algorithm::HS256)
    };
    let cases = [
        (&plain, json!({})),
        (&kid, json!({})),
        (&plain, json!({"nbf": now + 600})),
        (&plain, json!({"nbf": now - 600})),
        (&plain, json!({"nbf": null})),
        (&plain, json!({"aud": "someone"})),
        (&plain, json!({"aud": []})),
        (&plain, json!({"iss": "another"})),
        (&plain, json!({"iss": ["queuegate"]})),
        (&plain, json!({"exp": now - LEEWAY_SECS - 10})),
        (&plain, json!({"exp": now - 1})),
        (&plain, json!({"exp": 1.5e12})),
        (&plain, json!({"sub": 5})),
        (&plain, json!({"kind": "queue"})),
        (&plain, json!({"extra": {"nested": [1, 2]}})),
    ];
    for (header, changes) in cases {
        let mut claims =
            json!({"kind": "user", "iss": "queuegate", "sub": "5", "iat": now, "exp": now + 600});
        for (field, value) in changes.as_object().unwrap() {
            claims[field] = value.clone();
        }
        let token = jsonwebtoken::encode(header, &claims, &key).unwrap();
        let general = k.general_claims(&token, Kind::User).and_then(|c| {
            if c.kind == Kind::User {
                Ok(c.sub)
            } else {
                Err(TokenError::WrongKind {
                    expected: Kind::User,
                    found: c.kind,
                })
            }
        });
        assert_eq!(
            k.verify(&token, Kind::User).map(|c| c.sub),
            general,
            "{claims}"
        );
    }
    // And our own tokens do take the fast path.
    assert!(k.fast_claims(&k.mint_user(uid(5))).is_some());
}

proptest::proptest! {
    /// What we sign is serde's bytes for the claims, and serde's are what `jsonwebtoken`
    /// signs (`hs256::tests::signs_exactly_what_jsonwebtoken_signs`).
    #[test]
    fn claims_are_written_as_serde_writes_them(
        kind in proptest::sample::select(vec![Kind::User, Kind::Queue, Kind::Access, Kind::Stream]),
        sub in 1..=crate::domain::MAX_ID,
        cid in proptest::option::of(proptest::prelude::any::<u64>()),
        qid in proptest::option::of(proptest::prelude::any::<u64>()),
        seq in proptest::option::of(proptest::prelude::any::<u64>()),
        ep in proptest::option::of(proptest::prelude::any::<String>()),
        jti in proptest::option::of("[0-9a-f]{32}"),
        iat in proptest::prelude::any::<u64>(),
        exp in proptest::prelude::any::<u64>(),
    ) {
        let minted = Minted {
            kind, sub: UserId::new(sub).unwrap(), cid, qid, seq,
            ep: ep.as_deref(), jti: jti.as_deref(), iat, exp,
        };
        let claims = Claims {
            kind, iss: ISSUER.into(), sub: sub.to_string(), cid, qid, seq, ep: ep.clone(),
            jti: jti.clone(), iat, exp, has_nbf: false, has_aud: false,
        };
        proptest::prop_assert_eq!(minted.to_json(), serde_json::to_vec(&claims).unwrap());
    }
}
