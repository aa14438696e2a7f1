//! What a forwarded request and its answer look like.
//!
//! The request keeps its method, path, query, end-to-end headers and body (streamed, never
//! read here). Removed: hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it
//! names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`), `Expect`
//! (our server already answered it), `Content-Length` when the client also sent
//! `Transfer-Encoding` (which then framed the body, RFC 9112 §6.3), any client-sent identity
//! header, our grant cookie, the `Authorization` header when it carried our access token, and —
//! unless the peer is a trusted proxy — `Forwarded` and `X-Real-IP`, which a client could use to
//! pose as someone else. Set: `Host` (the origin's),
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Request-Id`, and the signed
//! identity header when a key is configured.
//!
//! The answer loses its hop-by-hop headers; everything else, body included, passes as it comes
//! — and an answer the origin said nothing about caching gets `Cache-Control: private`. It was
//! given to one admitted visitor: a shared cache in front of the gateway (a CDN) that kept it by
//! heuristic freshness would hand it to visitors who never waited, and the line would be
//! bypassed. The origin's own `Cache-Control`, `public` included, is its call and passes as is.

use super::GatewayError;
use super::grant::{self, COOKIE, IDENTITY_HEADER, Identity};
use super::pool::Upload;
use super::upstream::Upstream;
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, COOKIE as COOKIE_HEADER, EXPECT,
    FORWARDED, HOST, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use hyper::{HeaderMap, Method, Request, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Headers that describe one connection, not the message; never passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// The headers a forward sets, named once (a name given as text is parsed on every insert).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const IDENTITY: HeaderName = HeaderName::from_static(IDENTITY_HEADER);

/// One request on its way to the origin, as the API hands it over.
pub struct Outgoing<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
    pub peer: IpAddr,
    /// The peer is a trusted proxy: its `X-Forwarded-*` headers are kept and extended.
    pub peer_trusted: bool,
    /// The visitor reached us over TLS (as a trusted proxy said).
    pub tls: bool,
    pub request_id: &'a str,
    /// The admitted visitor.
    pub identity: Identity,
    /// The grant came in `Authorization` (ours, so the origin does not get it).
    pub strip_authorization: bool,
}

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` and those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, |_| false);
}

/// Removes the hop-by-hop headers and those `also` names, looking at each header name once
/// (a forward used to make some fifteen removals by name, each a hash lookup, mostly of
/// headers that were not there).
fn strip(headers: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    let mut gone: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            HOP_BY_HOP.contains(&n) || n.starts_with("proxy-") || also(n)
        })
        .cloned()
        .collect();
    if gone.contains(&CONNECTION) {
        gone.extend(
            headers
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()),
        );
    }
    for name in gone {
        headers.remove(name);
    }
}

/// Drops our grant cookie from the `Cookie` headers, keeping every other cookie as it was.
pub fn strip_grant_cookie(headers: &mut HeaderMap) {
    let ours = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k.trim()) == COOKIE;
    let present = headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|kv| ours(kv.trim())));
    if !present {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .filter(|kv| !ours(kv))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE_HEADER);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE_HEADER, v);
    }
}

/// Builds the request to the origin. The returned flag turns true if the client's body fails
/// while it is streamed (so that failure is blamed on the client, not the origin).
pub fn request(
    out: Outgoing<'_>,
    body: Option<Incoming>,
    upstream: &Upstream,
    identity_signer: Option<&grant::IdentitySigner>,
) -> Result<(Request<Upload>, Arc<AtomicBool>), GatewayError> {
    let Outgoing {
        method,
        path,
        query,
        mut headers,
        peer,
        peer_trusted,
        tls,
        request_id,
        identity,
        strip_authorization,
    } = out;
    let original_host = headers.get(HOST).cloned();
    // The body was framed by Transfer-Encoding (hyper decoded it so): a Content-Length beside
    // it is a lie the origin must not see, or its framing could differ from ours.
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    strip(&mut headers, |n| {
        n == EXPECT
            || n == IDENTITY_HEADER
            || (chunked && n == CONTENT_LENGTH)
            || (!peer_trusted && (n == FORWARDED || n == "x-real-ip"))
            || (strip_authorization && n == AUTHORIZATION)
    });
    strip_grant_cookie(&mut headers);

    // Who asked, as far as we can vouch: a trusted proxy's chain extended by its address, or
    // else only the address that connected to us (a client's own claim is dropped).
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if peer_trusted && !prior.trim().is_empty() => format!("{prior}, {peer}"),
        _ => peer.to_string(),
    };
    set_owned(&mut headers, X_FORWARDED_FOR, chain);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    let forwarded_host = match headers.get(&X_FORWARDED_HOST) {
        Some(v) if peer_trusted => Some(v.clone()),
        _ => original_host,
    };
    match forwarded_host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    set(&mut headers, X_REQUEST_ID, request_id);
    if let Some(signer) = identity_signer {
        set_owned(&mut headers, IDENTITY, signer.header(identity, request_id));
    }
    headers.insert(HOST, upstream.host().clone());

    let target = match query {
        Some(q) => {
            let mut t = String::with_capacity(path.len() + 1 + q.len());
            t.push_str(path);
            t.push('?');
            t.push_str(q);
            t
        }
        None => path.to_owned(),
    };
    let uri = upstream.uri(target)?;
    let (upload, failed) = Upload::new(body);
    let mut request = Request::new(upload);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok((request, failed))
}

/// The origin's answer as we pass it on: hop-by-hop headers removed, `Cache-Control: private`
/// when the origin set none (see the module's doc), the body untouched.
pub fn response<B>(mut r: Response<B>) -> Response<B> {
    strip_hop_by_hop(r.headers_mut());
    if !r.status().is_informational() && !r.headers().contains_key(CACHE_CONTROL) {
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    r
}

/// `set` for a value made for this request: the header takes the text's buffer as it is
/// instead of copying it.
fn set_owned(headers: &mut HeaderMap, name: HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "1"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "text/html"),
            ("x-end-to-end", "kept"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        // (The order of differently named headers carries no meaning, RFC 9110 §5.3.)
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-end-to-end"]);
    }

    fn outgoing(headers: HeaderMap, peer_trusted: bool) -> Request<Upload> {
        let settings = crate::config::UpstreamSettings {
            base: "http://127.0.0.1:9".into(),
            ca_file: None,
            client_cert: None,
            paths: vec![crate::config::GuardedPath {
                prefix: "/shop".into(),
                concert: crate::domain::ConcertId::new(7).unwrap(),
            }],
            connect_timeout: std::time::Duration::from_secs(1),
            first_byte_timeout: std::time::Duration::from_secs(1),
            identity_key: None,
            tunnel_recheck: std::time::Duration::from_secs(1),
            grant_cache: std::time::Duration::from_secs(1),
        };
        let upstream = Upstream::new(&settings).unwrap();
        let out = Outgoing {
            method: Method::POST,
            path: "/shop/x",
            query: Some("a=1"),
            headers,
            peer: IpAddr::from([10, 0, 0, 1]),
            peer_trusted,
            tls: false,
            request_id: "rid-1",
            identity: Identity {
                user: crate::domain::UserId::new(1).unwrap(),
                concert: crate::domain::ConcertId::new(7).unwrap(),
                exp: 1,
            },
            strip_authorization: false,
        };
        request(out, None, &upstream, None).unwrap().0
    }

    #[test]
    fn an_answer_without_caching_rules_is_kept_from_shared_caches() {
        let answer = |cache: Option<&'static str>, status: u16| {
            let mut r = Response::new(());
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            if let Some(c) = cache {
                r.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static(c));
            }
            response(r)
        };
        assert_eq!(answer(None, 200).headers()[CACHE_CONTROL], "private");
        assert_eq!(answer(None, 404).headers()[CACHE_CONTROL], "private");
        // The origin's own rules are its call.
        for own in ["public, max-age=60", "no-store", "private, max-age=5"] {
            assert_eq!(answer(Some(own), 200).headers()[CACHE_CONTROL], own);
        }
        // A switch of protocols is no answer to cache.
        assert!(!answer(None, 101).headers().contains_key(CACHE_CONTROL));
    }

    #[test]
    fn a_body_framed_by_transfer_encoding_loses_its_content_length() {
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        let r = outgoing(h, false);
        assert!(r.headers().get(CONTENT_LENGTH).is_none());
        assert!(r.headers().get(TRANSFER_ENCODING).is_none());
        assert_eq!(r.uri().to_string(), "/shop/x?a=1");
        assert_eq!(r.headers()[HOST], "127.0.0.1:9");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(outgoing(h, false).headers()[CONTENT_LENGTH], "5");
    }

    #[test]
    fn client_claims_about_who_it_is_go_unless_a_trusted_proxy_makes_them() {
        let claims = || {
            let mut h = HeaderMap::new();
            h.insert(
                FORWARDED,
                HeaderValue::from_static("for=6.6.6.6;proto=https"),
            );
            h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
            h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
            h
        };
        let r = outgoing(claims(), false);
        assert!(r.headers().get(FORWARDED).is_none());
        assert!(r.headers().get("x-real-ip").is_none());
        assert_eq!(r.headers()["x-forwarded-for"], "10.0.0.1");
        let r = outgoing(claims(), true);
        assert_eq!(r.headers()[FORWARDED], "for=6.6.6.6;proto=https");
        assert_eq!(r.headers()["x-forwarded-for"], "6.6.6.6, 10.0.0.1");
    }

    #[test]
    fn only_our_cookie_is_dropped() {
        let mut h = HeaderMap::new();
        h.append(COOKIE_HEADER, HeaderValue::from_static("a=1; qg_grant=tok"));
        h.append(
            COOKIE_HEADER,
            HeaderValue::from_static("qg_grant_other=2;b=3"),
        );
        strip_grant_cookie(&mut h);
        assert_eq!(h[COOKIE_HEADER], "a=1; qg_grant_other=2; b=3");
        let mut h = HeaderMap::new();
        h.append(COOKIE_HEADER, HeaderValue::from_static("qg_grant=tok"));
        strip_grant_cookie(&mut h);
        assert!(h.get(COOKIE_HEADER).is_none());
    }
}
