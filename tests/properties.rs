//! Property tests: hostile input to every parser a client can reach never panics, and nothing
//! but a genuine token ever verifies.

use proptest::prelude::*;
use queuegate::api::json::JsonObject;
use queuegate::api::routes as router;
use queuegate::domain::{
    ChargeAmount, ConcertId, FromJson, IdempotencyKey, SeatNo, StartsAt, UserId, UserName,
};
use queuegate::tokens::{AccessToken, TokenKeys};

fn keys() -> TokenKeys {
    TokenKeys::new(b"property-secret-property-secret!!")
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn body_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(obj) = JsonObject::parse(&bytes) {
            let _ = obj.required::<SeatNo>("seat_no");
            let _ = obj.optional::<ChargeAmount>("amount");
        }
    }

    #[test]
    fn domain_values_parse_within_their_ranges(v in json_value()) {
        if let Ok(s) = SeatNo::from_json(&v) { prop_assert!((1..=50).contains(&s.get())); }
        if let Ok(a) = ChargeAmount::from_json(&v) { prop_assert!((1..=1_000_000_000).contains(&a.get())); }
        if let Ok(u) = UserId::from_json(&v) { prop_assert!(u.get() >= 1); }
        if let Ok(n) = UserName::from_json(&v) {
            prop_assert!(!n.as_str().is_empty() && n.as_str().chars().count() <= 100);
        }
        let _ = StartsAt::from_json(&v);
        let _ = ConcertId::from_json(&v);
    }

    #[test]
    fn arbitrary_strings_never_verify_as_tokens(s in ".{0,400}") {
        let k = keys();
        prop_assert!(k.verify_user(&s).is_err());
        prop_assert!(k.verify_queue(&s).is_err());
        prop_assert!(k.verify_access(&s).is_err());
    }

    #[test]
    fn tampered_tokens_never_verify(pos in 0usize..400, byte in any::<u8>()) {
        let k = keys();
        let token = k.mint_access(&AccessToken {
            user_id: UserId::new(7).unwrap(),
            concert_id: ConcertId::new(3).unwrap(),
            queue_id: 11,
            seq: 42,
            exp: queuegate::tokens::now_secs() + 600,
        });
        let mut bytes = token.clone().into_bytes();
        let i = pos % bytes.len();
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(tampered) = String::from_utf8(bytes) {
            // Base64url has a few bit patterns that decode identically; anything accepted must
            // carry exactly the original claims.
            if let Ok(t) = k.verify_access(&tampered) {
                prop_assert_eq!(t, k.verify_access(&token).unwrap());
            }
        }
    }

    #[test]
    fn routing_and_ids_never_panic(path in "/[a-z0-9/._%-]{0,60}", key in prop::collection::vec(any::<u8>(), 0..300)) {
        for m in [hyper::Method::GET, hyper::Method::POST, hyper::Method::PUT, hyper::Method::DELETE, hyper::Method::PATCH] {
            let _ = router::resolve(&m, &path);
        }
        let _ = router::allowed(&path);
        let _ = IdempotencyKey::parse(&key);
        let _ = queuegate::domain::ReservationId::from_path(&path);
    }
}
