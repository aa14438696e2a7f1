//! Reading script replies.

use fred::prelude::*;

/// Reply values as numbers and text, whatever encoding the server chose (RESP2 bulk strings
/// or RESP3 integers and doubles). Scripts return small mixed arrays; these read them.
pub fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub fn value_f64(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Double(d) => *d,
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

pub fn value_str(v: &Value) -> &str {
    match v {
        Value::String(s) => s,
        Value::Bytes(b) => std::str::from_utf8(b).unwrap_or(""),
        _ => "",
    }
}

/// Redis integers are signed; our ids and counters stay far below i64::MAX.
pub fn int(n: u64) -> Value {
    Value::Integer(n.min(i64::MAX as u64) as i64)
}
