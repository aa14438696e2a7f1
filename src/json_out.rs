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
        if !needs_escape(value.as_bytes()) {
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

    /// The number as a JSON string (`"name":"123"`), as a JWT writes its subject.
    pub fn u64_as_str(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.key(name);
        self.out.push(b'"');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.out.push(b'"');
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

/// Whether JSON escapes any byte of `s` (a control character, `"` or `\\`). Eight bytes at a
/// time: a join's answer carries a ~300-byte queue token, and the byte-by-byte check was ~3,000
/// instructions of a join (callgrind, `scripts/instr-split.sh join`). Each test below is exact
/// about *whether* some byte of the word matches (the borrow trick only blurs *which*).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `w` is zero.
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        // A byte below 0x20 (bytes of 0x80 and up are UTF-8, never escaped: `!w` drops them).
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| escaped(b))
}

/// Whether JSON escapes this byte.
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_escaped_byte_is_found_at_every_offset() {
        let plain = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.é~ ".as_bytes();
        assert!(!needs_escape(plain));
        for bad in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..plain.len() {
                let mut s = plain.to_vec();
                s[at] = bad;
                assert!(needs_escape(&s), "byte {bad:#x} at {at}");
            }
        }
    }

    proptest! {
        #[test]
        fn the_word_check_agrees_with_the_byte_check(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(needs_escape(&s), s.iter().any(|&b| escaped(b)));
        }

        #[test]
        fn a_string_is_written_as_serde_writes_it(s in ".{0,40}") {
            let mut w = ObjectWriter::with_capacity(8);
            w.str("v", &s);
            let ours = String::from_utf8(w.finish()).unwrap();
            prop_assert_eq!(ours, serde_json::json!({ "v": s }).to_string());
        }
    }
}
