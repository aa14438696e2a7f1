//! Domain newtypes that *parse* their input: once a value has one of these types it is known to be
//! valid, so handlers and SQL never re-check ranges. Each parser returns the reason in words; the
//! HTTP layer adds the field name and turns it into a 422.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// A value that can be read from one JSON field.
pub trait FromJson: Sized {
    fn from_json(v: &Value) -> Result<Self, String>;
}

/// Largest id we hand out or accept: ids are BIGINT UNSIGNED but JSON numbers above 2^53 lose
/// precision in browsers, so we refuse them up front rather than mis-route a request.
pub const MAX_ID: u64 = (1 << 53) - 1;

fn positive_integer(v: &Value, max: u64) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ if v.is_number() => Err(format!("must be an integer in 1..={max}")),
        _ => Err("must be an integer".into()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991.0)]
        pub struct $name(u64);

        impl $name {
            pub fn new(n: u64) -> Option<Self> {
                (1..=MAX_ID).contains(&n).then_some(Self(n))
            }
            pub fn get(self) -> u64 {
                self.0
            }
            /// Parses a path segment; anything that is not an id names no resource.
            pub fn from_path(s: &str) -> Option<Self> {
                if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok().and_then(Self::new)
            }
        }

        impl FromJson for $name {
            fn from_json(v: &Value) -> Result<Self, String> {
                positive_integer(v, MAX_ID).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(UserId);
id_type!(ConcertId);
id_type!(ScheduleId);
id_type!(ReservationId);

/// One concert's waiting line: the concert, and the random id its line was created with.
///
/// Queue state in Redis is keyed by both, so a line belongs to exactly the concert it was made
/// for: a fresh database whose concert 1 is a different concert, or a second environment
/// sharing the Redis, never picks up another's line or settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineId {
    pub concert: ConcertId,
    pub queue_id: u64,
}

impl LineId {
    /// A new random queue id (below 2^53, so it survives JSON and JavaScript).
    pub fn fresh_queue_id() -> u64 {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let n = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
        (n & MAX_ID).max(1)
    }

    /// The compact form used in the admission timer's set: `concert.queue_id`.
    pub fn member(self) -> String {
        format!("{}.{:x}", self.concert, self.queue_id)
    }

    pub fn from_member(s: &str) -> Option<LineId> {
        let (c, q) = s.split_once('.')?;
        Some(LineId {
            concert: ConcertId::from_path(c)?,
            queue_id: u64::from_str_radix(q, 16).ok().filter(|q| *q > 0)?,
        })
    }
}

impl fmt::Display for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.concert, self.queue_id)
    }
}

/// Seats of a schedule are numbered 1..=50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = u8, minimum = 1, maximum = 50)]
pub struct SeatNo(u8);

impl SeatNo {
    pub const MAX: u8 = 50;

    pub fn new(n: u64) -> Option<Self> {
        (1..=u64::from(Self::MAX))
            .contains(&n)
            .then_some(Self(n as u8))
    }
    pub fn get(self) -> u8 {
        self.0
    }
    pub fn all() -> impl Iterator<Item = SeatNo> {
        (1..=Self::MAX).map(SeatNo)
    }
}

impl FromJson for SeatNo {
    fn from_json(v: &Value) -> Result<Self, String> {
        positive_integer(v, u64::from(Self::MAX)).map(|n| SeatNo(n as u8))
    }
}

/// An amount of money added to a wallet in one charge: 1..=1_000_000_000 smallest units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = i64, minimum = 1, maximum = 1000000000)]
pub struct ChargeAmount(i64);

impl ChargeAmount {
    pub const MAX: u64 = 1_000_000_000;
    pub fn get(self) -> i64 {
        self.0
    }
}

impl FromJson for ChargeAmount {
    fn from_json(v: &Value) -> Result<Self, String> {
        positive_integer(v, Self::MAX).map(|n| ChargeAmount(n as i64))
    }
}

/// A seat price set by an admin: 0..=1_000_000_000 smallest units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = i64, minimum = 0, maximum = 1000000000)]
pub struct Price(i64);

impl Price {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl FromJson for Price {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v.as_u64() {
            Some(n) if n <= ChargeAmount::MAX => Ok(Price(n as i64)),
            _ => Err(format!("must be an integer in 0..={}", ChargeAmount::MAX)),
        }
    }
}

fn bounded_text(v: &Value, max_chars: usize) -> Result<String, String> {
    let Some(s) = v.as_str() else {
        return Err("must be a string".into());
    };
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

/// A display name: 1..=100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 100)]
pub struct UserName(String);

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromJson for UserName {
    fn from_json(v: &Value) -> Result<Self, String> {
        bounded_text(v, 100).map(UserName)
    }
}

/// A concert's name: 1..=200 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 200)]
pub struct ConcertName(String);

impl ConcertName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromJson for ConcertName {
    fn from_json(v: &Value) -> Result<Self, String> {
        bounded_text(v, 200).map(ConcertName)
    }
}

/// When a schedule starts: an RFC 3339 timestamp, stored and shown in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct StartsAt(pub chrono::DateTime<chrono::Utc>);

impl FromJson for StartsAt {
    fn from_json(v: &Value) -> Result<Self, String> {
        let s = v.as_str().ok_or("must be an RFC 3339 timestamp string")?;
        let t = chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2027-05-01T19:00:00Z")?;
        let t = t.with_timezone(&chrono::Utc);
        if !(1970..=9999).contains(&chrono::Datelike::year(&t)) {
            return Err("must be between years 1970 and 9999".into());
        }
        Ok(StartsAt(t))
    }
}

/// A client-chosen `Idempotency-Key`: 1..=255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 255 || !raw.iter().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1..=255 visible ASCII characters".into());
        }
        // Checked to be ASCII just above.
        Ok(IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Formats a database timestamp (UTC) the way the contract shows times.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seat_numbers_are_1_to_50_integers() {
        assert_eq!(SeatNo::from_json(&json!(1)).unwrap().get(), 1);
        assert_eq!(SeatNo::from_json(&json!(50)).unwrap().get(), 50);
        for bad in [
            json!(0),
            json!(51),
            json!(-1),
            json!(1.5),
            json!("3"),
            json!(null),
            json!(1e300),
        ] {
            assert!(SeatNo::from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(SeatNo::all().count(), 50);
    }

    #[test]
    fn charge_amounts_are_bounded() {
        assert!(ChargeAmount::from_json(&json!(1)).is_ok());
        assert!(ChargeAmount::from_json(&json!(1_000_000_000)).is_ok());
        for bad in [
            json!(0),
            json!(-5),
            json!(1_000_000_001u64),
            json!(u64::MAX),
            json!("10"),
        ] {
            assert!(ChargeAmount::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_parse_from_json_and_paths() {
        assert_eq!(UserId::from_json(&json!(7)).unwrap().get(), 7);
        assert!(UserId::from_json(&json!(0)).is_err());
        assert!(UserId::from_json(&json!(MAX_ID + 1)).is_err());
        assert_eq!(ScheduleId::from_path("42").map(|s| s.get()), Some(42));
        for bad in ["", "0", "-1", "4a", "99999999999999999999", "+3"] {
            assert!(ScheduleId::from_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            UserName::from_json(&json!("  Ada ")).unwrap().as_str(),
            "Ada"
        );
        assert!(UserName::from_json(&json!("   ")).is_err());
        assert!(UserName::from_json(&json!("a\u{0}b")).is_err());
        assert!(UserName::from_json(&json!("é".repeat(100))).is_ok());
        assert!(UserName::from_json(&json!("é".repeat(101))).is_err());
        assert!(UserName::from_json(&json!(5)).is_err());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse(b"order-123").is_ok());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"with space").is_err());
        assert!(IdempotencyKey::parse(&[0xff]).is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 256]).is_err());
    }

    #[test]
    fn line_ids_round_trip_through_the_timer_set() {
        let line = LineId {
            concert: ConcertId::new(42).unwrap(),
            queue_id: LineId::fresh_queue_id(),
        };
        assert!(line.queue_id <= MAX_ID && line.queue_id > 0);
        assert_eq!(LineId::from_member(&line.member()), Some(line));
        for bad in ["42", "42.", ".1f", "0.1f", "42.zz", "42.0"] {
            assert_eq!(LineId::from_member(bad), None, "{bad}");
        }
    }

    #[test]
    fn starts_at_is_rfc3339() {
        let t = StartsAt::from_json(&json!("2027-05-01T19:00:00+02:00")).unwrap();
        assert_eq!(rfc3339(t.0), "2027-05-01T17:00:00.000Z");
        assert!(StartsAt::from_json(&json!("tomorrow")).is_err());
    }
}
