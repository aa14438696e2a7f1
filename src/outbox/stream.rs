//! The booking events stream in Redis: its keys, and reading it (`queuegate events`, the
//! checker, tests).
//!
//! Keys. The stream is one global key per deployment, `<prefix>:events` (not one per concert:
//! consumers want one ordered feed). Each published event leaves a dedup key
//! `{<prefix>:events}:seen:<event_id>` whose hash tag is the stream's whole name, so on Redis
//! Cluster it lands in the stream's slot and the publish script may touch both atomically.
//! One slot for all events is safe: the publish rate is bounded by bookings (thousands per
//! second at most), far below what one node serves, and one key is what keeps one order.
//!
//! Commands go out as custom commands (XRANGE, XREAD, XINFO) with the same fail-fast options
//! as every other call, and replies are read in both RESP2 and RESP3 shapes.

use crate::redis::request_options;
use crate::store_error::StoreError;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use serde::Serialize;
use std::time::Duration;

/// The stream's key.
pub fn stream_key(prefix: &str) -> String {
    format!("{prefix}:events")
}

/// The dedup key of one published event (same cluster slot as the stream, see above).
pub fn dedup_key(prefix: &str, event_id: &str) -> String {
    format!("{{{prefix}:events}}:seen:{event_id}")
}

/// One stream entry as `queuegate events` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// The stream entry id (`<ms>-<n>`), usable with `--from`.
    pub id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

impl Entry {
    /// `data.reservation_id`, for events about a reservation.
    pub fn reservation_id(&self) -> Option<u64> {
        self.data.get("reservation_id").and_then(|v| v.as_u64())
    }

    pub fn user_id(&self) -> Option<u64> {
        self.data.get("user_id").and_then(|v| v.as_u64())
    }
}

/// What XINFO STREAM says about the stream (zeros when it does not exist yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub length: u64,
    /// Every entry ever added (Redis ≥ 7); more than `length` means MAXLEN trimmed some.
    pub entries_added: Option<u64>,
    pub first_id: Option<String>,
}

impl StreamInfo {
    pub fn trimmed(&self) -> bool {
        self.entries_added.is_some_and(|added| added > self.length)
    }
}

/// Is `s` something `--from` accepts: `0`, `$`, or a stream id (`<ms>` or `<ms>-<n>`)?
pub fn valid_start(s: &str) -> bool {
    if s == "$" {
        return true;
    }
    let (ms, n) = s.split_once('-').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
    digits(ms) && digits(n)
}

/// Reads the events stream.
#[derive(Clone)]
pub struct EventStream {
    pool: Pool,
    key: String,
}

impl EventStream {
    pub fn new(pool: Pool, prefix: &str) -> Self {
        EventStream {
            pool,
            key: stream_key(prefix),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn command(&self, name: &'static str, blocking: bool) -> CustomCommand {
        let slot = fred::util::redis_keyslot(self.key.as_bytes());
        CustomCommand::new_static(name, ClusterHash::Custom(slot), blocking)
    }

    /// Up to `count` entries after `from` (exclusive; `0` = from the start).
    pub async fn after(&self, from: &str, count: usize) -> Result<Vec<Entry>, StoreError> {
        let start = if from == "0" || from == "0-0" {
            "-".to_owned()
        } else {
            format!("({from}")
        };
        let args: Vec<Value> = vec![
            self.key.as_str().into(),
            start.into(),
            "+".into(),
            "COUNT".into(),
            (count.max(1) as i64).into(),
        ];
        let reply: Value = self
            .pool
            .next_connected()
            .with_options(&request_options())
            .custom(self.command("XRANGE", false), args)
            .await?;
        entries(reply)
    }

    /// Every entry, in stream order (pages of 1,000).
    pub async fn all(&self) -> Result<Vec<Entry>, StoreError> {
        let mut out: Vec<Entry> = Vec::new();
        let mut from = "0".to_owned();
        loop {
            let page = self.after(&from, 1000).await?;
            let full = page.len() == 1000;
            if let Some(last) = page.last() {
                from = last.id.clone();
            }
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Waits up to `block` for entries after `from` (`$` = only ones added from now on).
    pub async fn wait_after(
        &self,
        from: &str,
        block: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let block_ms = block.as_millis().min(i64::MAX as u128) as i64;
        let args: Vec<Value> = vec![
            "COUNT".into(),
            (count.max(1) as i64).into(),
            "BLOCK".into(),
            block_ms.into(),
            "STREAMS".into(),
            self.key.as_str().into(),
            from.into(),
        ];
        let mut options = request_options();
        options.timeout = Some(block + Duration::from_secs(2));
        let reply: Value = self
            .pool
            .next_connected()
            .with_options(&options)
            .custom(self.command("XREAD", true), args)
            .await?;
        // RESP2: [[key, entries]]; RESP3: {key: entries}; nil when nothing came.
        let mut out = Vec::new();
        let items = match reply {
            Value::Null => return Ok(out),
            other => other.into_array(),
        };
        let mut pairs: Vec<Value> = Vec::new();
        for item in items {
            match item {
                Value::Array(kv) => pairs.extend(kv),
                other => pairs.push(other),
            }
        }
        for chunk in pairs.chunks(2) {
            if let [_, list] = chunk {
                out.extend(entries(list.clone())?);
            }
        }
        Ok(out)
    }

    /// Length, entries ever added, first id.
    pub async fn info(&self) -> Result<StreamInfo, StoreError> {
        let args: Vec<Value> = vec!["STREAM".into(), self.key.as_str().into()];
        let reply: Result<Value, fred::error::Error> = self
            .pool
            .next_connected()
            .with_options(&request_options())
            .custom(self.command("XINFO", false), args)
            .await;
        let reply = match reply {
            Ok(v) => v,
            // XINFO on a stream nobody wrote yet.
            Err(e) if e.details().contains("no such key") => return Ok(StreamInfo::default()),
            Err(e) => return Err(e.into()),
        };
        let fields = reply.into_array();
        let mut info = StreamInfo::default();
        for kv in fields.chunks(2) {
            let [k, v] = kv else { continue };
            match k.as_str().as_deref() {
                Some("length") => info.length = crate::redis::value_u64(v).unwrap_or(0),
                Some("entries-added") => info.entries_added = crate::redis::value_u64(v),
                Some("first-entry") => {
                    info.first_id = v.clone().into_array().first().and_then(|id| id.as_string())
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Entries from an XRANGE reply (or one stream's list in an XREAD reply).
fn entries(reply: Value) -> Result<Vec<Entry>, StoreError> {
    let list = match reply {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        other => return Err(StoreError::bug(format!("stream reply: {other:?}"))),
    };
    list.into_iter().map(entry).collect()
}

fn entry(v: Value) -> Result<Entry, StoreError> {
    let bad = || StoreError::bug("stream entry of an unexpected shape");
    let mut parts = v.into_array().into_iter();
    let id = parts.next().and_then(|v| v.as_string()).ok_or_else(bad)?;
    let fields = parts.next().ok_or_else(bad)?.into_array();
    let mut e = Entry {
        id,
        event_id: String::new(),
        kind: String::new(),
        data: serde_json::Value::Null,
    };
    for kv in fields.chunks(2) {
        let [k, v] = kv else { continue };
        let value = v.as_string().unwrap_or_default();
        match k.as_str().as_deref() {
            Some("event_id") => e.event_id = value,
            Some("type") => e.kind = value,
            Some("data") => {
                e.data = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value))
            }
            _ => {}
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_keys_share_the_streams_cluster_slot() {
        let stream = stream_key("qg");
        assert_eq!(stream, "qg:events");
        let dedup = dedup_key("qg", "0190a1b2-0000-7000-8000-000000000001");
        assert_eq!(
            fred::util::redis_keyslot(stream.as_bytes()),
            fred::util::redis_keyslot(dedup.as_bytes())
        );
    }

    #[test]
    fn from_accepts_ids_zero_and_dollar_only() {
        for ok in ["0", "$", "1700000000000-0", "1700000000000", "0-1"] {
            assert!(valid_start(ok), "{ok}");
        }
        for bad in ["", "-", "abc", "1-", "-1", "1-2-3", "+", "1.5"] {
            assert!(!valid_start(bad), "{bad}");
        }
    }

    #[test]
    fn entries_parse_from_an_xrange_reply() {
        let raw = Value::Array(vec![Value::Array(vec![
            "1-0".into(),
            Value::Array(vec![
                "event_id".into(),
                "e1".into(),
                "type".into(),
                "reservation.held".into(),
                "data".into(),
                r#"{"reservation_id":9,"user_id":2}"#.into(),
            ]),
        ])]);
        let got = entries(raw).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].kind, "reservation.held");
        assert_eq!(got[0].reservation_id(), Some(9));
        assert_eq!(got[0].user_id(), Some(2));
    }
}
