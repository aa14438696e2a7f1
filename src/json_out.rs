//! JSON out, written field by field: byte for byte what `serde_json` writes for a struct with
//! the same fields in the same order (each user's tests compare the two), for what is written
//! most — every poll's and join's answer, every token signed. serde's general writer cost more
//! there than the work itself: a join's answer escaped its ~250-byte queue token byte by byte
//! through a table, and grew its buffer twice.

/// A JSON object under construction: `{`, then fields in the order they are added, then `}`.
pub struct ObjectWriter {
    out: Vec<u8>,
    first: bool,
}

impl ObjectWriter {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// `"name":`. Names are our own identifiers, which JSON never escapes.
    fn key(&mut self, name: &'static str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.key(name);
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            // Nothing JSON escapes (a token, a timestamp, a status): copied as it is.
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else if serde_json::to_writer(&mut self.out, value).is_err() {
            // Writing to a Vec cannot fail; should it ever, the answer stays valid JSON.
            self.out.extend_from_slice(b"null");
        }
        self
    }

    pub fn u64(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.key(name);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// The number, or `null` (an `Option` serde writes without `skip_serializing_if`).
    pub fn opt_u64(&mut self, name: &'static str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(name, v),
            None => {
                self.key(name);
                self.out.extend_from_slice(b"null");
                self
            }
        }
    }

    /// The string only when there is one (an `Option` serde writes with
    /// `skip_serializing_if = "Option::is_none"`).
    pub fn str_if(&mut self, name: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(name, v);
        }
        self
    }

    /// The number only when there is one (as `str_if`).
    pub fn u64_if(&mut self, name: &'static str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(name, v);
        }
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}
