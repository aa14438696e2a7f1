//! The visitor's side of a grant: the cookie a browser carries it in, the path it returns to
//! after waiting, and the identity header the origin learns who it serves from.
//!
//! **The cookie** holds the access tokens themselves: one per line the visitor is admitted to
//! (`~` between them; one line, one token), since a gateway may guard several sales' paths,
//! each behind its own line. It is `HttpOnly` (page scripts cannot read or leak it),
//! `SameSite=Lax` (other sites cannot make the browser send it with their form posts), `Path=/`,
//! `Max-Age` = the longest remaining admission, and `Secure` when the visitor reached us over
//! TLS. Its value is only ever *verified* — signature, kind, concert, and the live admission
//! behind it on every request — so a forged, expired or revoked one is worth nothing.
//!
//! **Return paths** come back from a browser: only same-origin absolute paths are accepted, so
//! the waiting page can never be turned into an open redirect.
//!
//! **The identity header** is `X-Queuegate-Identity: user=U;concert=C;exp=E;rid=R;sig=S` with
//! `S` = lowercase hex HMAC-SHA256 over `U|C|E|R` under `UPSTREAM_IDENTITY_KEY`, a key only
//! queuegate and the origin know (never `JWT_SECRET`: the origin must not be able to mint
//! access tokens). `R` is the request's `X-Request-Id`, so a captured header vouches for that
//! one request only; `E` is the admission's end (Unix seconds).

use crate::config::Secret;
use crate::domain::{ConcertId, UserId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the grant cookie. Never forwarded to the origin.
pub const COOKIE: &str = "qg_grant";

/// Name of the identity header. A copy sent by a client is always removed first.
pub const IDENTITY_HEADER: &str = "x-queuegate-identity";

/// Longest return path accepted (a URL a browser can hold comfortably).
const MAX_RETURN: usize = 2048;

/// What separates the grants in the cookie: a cookie-value character that no token holds.
const SEPARATOR: char = '~';

/// The most grants one cookie carries (~300 bytes each, well inside a browser's 4 KB).
pub const MAX_GRANTS: usize = 8;

/// The grants in a cookie's value, at most `MAX_GRANTS` (unverified: the caller verifies each).
pub fn grants(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(SEPARATOR)
        .filter(|g| !g.is_empty())
        .take(MAX_GRANTS)
}

/// `Set-Cookie` value that stores `grants` for `max_age_secs`.
pub fn set_cookie(grants: &[&str], max_age_secs: u64, secure: bool) -> String {
    let mut value = String::with_capacity(grants.iter().map(|g| g.len() + 1).sum());
    for g in grants.iter().take(MAX_GRANTS) {
        if !value.is_empty() {
            value.push(SEPARATOR);
        }
        value.push_str(g);
    }
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        max_age_secs.max(1),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that removes the grant (same attributes, so the browser matches it).
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The return path if it is a same-origin absolute path: one leading `/` not followed by `/`
/// or `\` (which browsers read as another host), no backslash anywhere (some browsers turn it
/// into `/`), no control character, space or non-ASCII byte (which could hide any of these),
/// and not absurdly long. A scheme (`https:`, `javascript:`) cannot come first, since the path
/// must start with `/`.
pub fn safe_return_path(p: &str) -> Option<&str> {
    let b = p.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_RETURN
        && b[0] == b'/'
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.iter().all(|&c| c.is_ascii_graphic() && c != b'\\');
    ok.then_some(p)
}

/// The waiting page of `concert`, with the path (and query) to come back to once admitted,
/// percent-encoded as one query value. An unsafe return path is left out, never passed on.
pub fn waiting_url(concert: ConcertId, path: &str, query: Option<&str>) -> String {
    let mut back = path.to_owned();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        back.push('?');
        back.push_str(q);
    }
    match safe_return_path(&back) {
        Some(back) => format!("/concerts/{concert}?return={}", encode_component(back)),
        None => format!("/concerts/{concert}"),
    }
}

/// Percent-encodes everything but unreserved characters and `/` (readable, and safe inside one
/// query value).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who the origin is serving: the admitted user, the line, and when the admission ends.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub user: UserId,
    pub concert: ConcertId,
    /// Admission end, Unix seconds.
    pub exp: u64,
}

/// Signs identity headers under `UPSTREAM_IDENTITY_KEY`. The key's HMAC state is made once
/// (keying hashes two blocks) and copied for each forward.
#[derive(Clone)]
pub struct IdentitySigner {
    keyed: Hmac<Sha256>,
}

impl IdentitySigner {
    /// (HMAC takes keys of any length; the error is only ever a change in that.)
    pub fn new(key: &Secret) -> Result<Self, String> {
        let keyed = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
            .map_err(|e| format!("UPSTREAM_IDENTITY_KEY cannot key HMAC-SHA256: {e}"))?;
        Ok(IdentitySigner { keyed })
    }

    /// The identity header's value, signed for the request `request_id`.
    /// (Built in one buffer without `format!`: every forwarded request carries one.)
    pub fn header(&self, id: Identity, request_id: &str) -> String {
        let (mut user, mut concert, mut exp) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        let (user, concert, exp) = (
            user.format(id.user.get()),
            concert.format(id.concert.get()),
            exp.format(id.exp),
        );
        let mut mac = self.keyed.clone();
        for part in [user, "|", concert, "|", exp, "|"] {
            mac.update(part.as_bytes());
        }
        mac.update(request_id.as_bytes());
        let sig = mac.finalize().into_bytes();
        let mut out = String::with_capacity(64 + request_id.len() + 2 * sig.len());
        for part in [
            "user=",
            user,
            ";concert=",
            concert,
            ";exp=",
            exp,
            ";rid=",
            request_id,
            ";sig=",
        ] {
            out.push_str(part);
        }
        push_hex(&mut out, &sig);
        out
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_absolute_paths_return() {
        for ok in ["/", "/shop", "/shop/checkout?x=1&y=%2F", "/a/b/"] {
            assert_eq!(safe_return_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "shop",
            "//evil.example",
            "//evil.example/shop",
            "/\\evil.example",
            "/shop\\..\\x",
            "https://evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/shop\u{0}",
            "/caf\u{e9}",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn the_waiting_url_carries_the_encoded_return_path_or_none() {
        let c = ConcertId::new(7).unwrap();
        assert_eq!(
            waiting_url(c, "/shop/checkout", Some("x=1&y=2")),
            "/concerts/7?return=/shop/checkout%3Fx%3D1%26y%3D2"
        );
        assert_eq!(waiting_url(c, "/shop", None), "/concerts/7?return=/shop");
        assert_eq!(waiting_url(c, "//evil.example", None), "/concerts/7");
    }

    #[test]
    fn cookies_carry_the_safe_attributes() {
        let c = set_cookie(&["abc.def.ghi"], 120, false);
        assert_eq!(
            c,
            "qg_grant=abc.def.ghi; Path=/; Max-Age=120; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie(&["t"], 0, true).ends_with("Max-Age=1; HttpOnly; SameSite=Lax; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn a_cookie_carries_one_grant_per_line_and_reads_back_as_written() {
        let c = set_cookie(&["a.b.c", "d.e.f"], 60, false);
        let value = c
            .strip_prefix("qg_grant=")
            .and_then(|v| v.split(';').next())
            .unwrap();
        assert_eq!(value, "a.b.c~d.e.f");
        assert_eq!(grants(value).collect::<Vec<_>>(), ["a.b.c", "d.e.f"]);
        // One grant: the value is the token itself, as before there were several lines.
        assert_eq!(grants("a.b.c").collect::<Vec<_>>(), ["a.b.c"]);
        assert_eq!(grants("~a~~b~").collect::<Vec<_>>(), ["a", "b"]);
        // No more than MAX_GRANTS are read or written, however long the value.
        let many: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(grants(&many.join("~")).count(), MAX_GRANTS);
        let written = set_cookie(&many, 60, false);
        assert_eq!(written.matches('~').count(), MAX_GRANTS - 1);
    }

    #[test]
    fn the_identity_header_is_an_hmac_over_user_concert_exp_and_request_id() {
        let key = Secret::new("origin-shared-key-0123456789abcdef");
        let id = Identity {
            user: UserId::new(42).unwrap(),
            concert: ConcertId::new(7).unwrap(),
            exp: 1_700_000_000,
        };
        let signer = IdentitySigner::new(&key).unwrap();
        let v = signer.header(id, "req-1");
        let (fields, sig) = v.rsplit_once(";sig=").unwrap();
        assert_eq!(fields, "user=42;concert=7;exp=1700000000;rid=req-1");
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).unwrap();
        mac.update(b"42|7|1700000000|req-1");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, want);
        assert_eq!(sig.len(), 64);
        // Another request id, another signature.
        assert_ne!(
            signer.header(id, "req-2").rsplit_once(";sig=").unwrap().1,
            sig
        );
    }
}
