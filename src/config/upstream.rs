//! Gateway mode's settings (`UPSTREAM_*`): the origin behind the line and how it is reached;
//! which paths are guarded, and by which line, is `guarded`'s.

use super::env::Env;
use super::guarded::{GuardedPath, PathsError, upstream_paths};
use super::values::{ConfigError, Secret};
use crate::domain::ConcertId;
use std::time::Duration;

/// Gateway mode (`UPSTREAM_URL` set): the origin behind the line and the paths the line guards.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// `http://host[:port]` or `https://host[:port]` of the origin, without a trailing slash.
    pub base: String,
    /// PEM file of the certificate authorities an https origin's certificate must chain to,
    /// instead of the public (Mozilla) roots: for an origin with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// The certificate the gateway shows an https origin that asks for one (mutual TLS), so
    /// the origin can let in nobody but its gateways.
    pub client_cert: Option<ClientCert>,
    /// Protected path prefixes and the line guarding each, longest prefix first (the order a
    /// path is matched in). Matched segment-wise: `/shop` guards `/shop` and `/shop/…`, not
    /// `/shopping`; `/` guards every path that is not queuegate's own.
    pub paths: Vec<GuardedPath>,
    /// Time to open a TCP connection to the origin.
    pub connect_timeout: Duration,
    /// Time from sending a request until the origin's response head arrives (connect included).
    pub first_byte_timeout: Duration,
    /// Key of the HMAC-SHA256 identity header the origin checks; unset = no identity header.
    pub identity_key: Option<Secret>,
    /// How often an open tunnel's grant is checked again. Ends announced by the queue store
    /// close tunnels at once; this bounds how long one whose announcement was lost (the
    /// subscriber reconnecting, say) stays open.
    pub tunnel_recheck: Duration,
    /// How long a grant the store confirmed live is trusted without asking again, while the
    /// announcements of ends are heard (`gateway::confirmed`); zero asks on every request.
    pub grant_cache: Duration,
}

/// PEM files of a TLS client certificate: `UPSTREAM_CLIENT_CERT` (the chain, leaf first) and
/// `UPSTREAM_CLIENT_KEY` (its private key). Read when the gateway is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub chain: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Reads the `UPSTREAM_*` variables; all but `UPSTREAM_URL` are ignored while it is unset.
pub(super) fn upstream(env: &Env<'_>) -> Result<Option<UpstreamSettings>, ConfigError> {
    let Some(url) = env.raw("UPSTREAM_URL") else {
        return Ok(None);
    };
    let base =
        upstream_base(&url).map_err(|reason| env.error("UPSTREAM_URL", url.clone(), reason))?;
    let default_concert = match env.raw("UPSTREAM_CONCERT_ID") {
        None => None,
        Some(raw) => Some(ConcertId::from_path(&raw).ok_or_else(|| {
            env.error(
                "UPSTREAM_CONCERT_ID",
                raw,
                "expected a concert id (a positive integer)",
            )
        })?),
    };
    let paths_raw = env.string("UPSTREAM_PATHS", "/");
    let paths = upstream_paths(&paths_raw, default_concert).map_err(|e| match e {
        PathsError::NoLine(prefix) => env.error(
            "UPSTREAM_CONCERT_ID",
            String::new(),
            &format!(
                "required when UPSTREAM_URL is set and a prefix of UPSTREAM_PATHS ({prefix}) names \
                 no line of its own (the concert whose line guards it; or write {prefix}=<concert id>)"
            ),
        ),
        PathsError::Bad(reason) => env.error("UPSTREAM_PATHS", paths_raw.clone(), &reason),
    })?;
    // A default line that guards nothing is a mistake, not a harmless leftover: the operator
    // believes that line's admissions open some path.
    if let Some(d) = default_concert
        && !paths.iter().any(|g| g.concert == d)
    {
        return Err(env.error(
            "UPSTREAM_CONCERT_ID",
            d.to_string(),
            "guards no path: every prefix of UPSTREAM_PATHS names another line (drop \
             UPSTREAM_CONCERT_ID, or give it a prefix)",
        ));
    }
    let identity_key = match env.raw("UPSTREAM_IDENTITY_KEY") {
        Some(k) if k.len() >= 32 => Some(Secret::new(k)),
        Some(k) => {
            return Err(env.error(
                "UPSTREAM_IDENTITY_KEY",
                "<hidden>".into(),
                &format!("must be at least 32 bytes (got {})", k.len()),
            ));
        }
        None => None,
    };
    let ca_file = env.raw("UPSTREAM_CA_FILE").map(std::path::PathBuf::from);
    if ca_file.is_some() && !base.starts_with("https://") {
        return Err(env.error(
            "UPSTREAM_URL",
            url,
            "UPSTREAM_CA_FILE is set, so the origin is expected at https://",
        ));
    }
    let client_cert = match (
        env.raw("UPSTREAM_CLIENT_CERT"),
        env.raw("UPSTREAM_CLIENT_KEY"),
    ) {
        (None, None) => None,
        (Some(chain), Some(key)) => Some(ClientCert {
            chain: chain.into(),
            key: key.into(),
        }),
        (Some(chain), None) => {
            return Err(env.error(
                "UPSTREAM_CLIENT_KEY",
                String::new(),
                &format!(
                    "required with UPSTREAM_CLIENT_CERT={chain} (the certificate's private key)"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(env.error(
                "UPSTREAM_CLIENT_CERT",
                String::new(),
                "required with UPSTREAM_CLIENT_KEY (the certificate that key belongs to)",
            ));
        }
    };
    if client_cert.is_some() && !base.starts_with("https://") {
        return Err(env.error(
            "UPSTREAM_URL",
            url,
            "UPSTREAM_CLIENT_CERT is set, so the origin is expected at https://",
        ));
    }
    Ok(Some(UpstreamSettings {
        base,
        ca_file,
        client_cert,
        paths,
        connect_timeout: Duration::from_millis(env.int(
            "UPSTREAM_CONNECT_TIMEOUT_MS",
            2000,
            1,
            60_000,
        )?),
        first_byte_timeout: Duration::from_millis(env.int(
            "UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
            30_000,
            1,
            600_000,
        )?),
        identity_key,
        tunnel_recheck: Duration::from_millis(env.int(
            "UPSTREAM_TUNNEL_RECHECK_MS",
            1000,
            100,
            600_000,
        )?),
        grant_cache: Duration::from_millis(env.int("UPSTREAM_GRANT_CACHE_MS", 1000, 0, 60_000)?),
    }))
}

/// `http[s]://host[:port][/]` → `http[s]://host[:port]` (lower-case scheme).
fn upstream_base(url: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "expected http://host:port or https://host:port";
    let lower = url.to_ascii_lowercase();
    let scheme = if lower.starts_with("https://") {
        "https"
    } else if lower.starts_with("http://") {
        "http"
    } else {
        return Err(SHAPE);
    };
    let uri: hyper::Uri = url.parse().map_err(|_| SHAPE)?;
    let authority = uri.authority().ok_or(SHAPE)?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported");
    }
    if authority.host().is_empty() {
        return Err(SHAPE);
    }
    if uri.path() != "/" || uri.query().is_some() || url.ends_with('?') {
        return Err("expected no path or query after host:port (paths are forwarded as they are)");
    }
    Ok(format!("{scheme}://{}", authority.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::config::tests::settings;

    const GATEWAY: &[(&str, &str)] = &[
        ("UPSTREAM_URL", "http://127.0.0.1:8081"),
        ("UPSTREAM_CONCERT_ID", "7"),
    ];

    fn gateway(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut pairs = GATEWAY.to_vec();
        pairs.extend_from_slice(extra);
        settings(&pairs)
    }

    #[test]
    fn gateway_mode_is_off_by_default_and_reads_its_settings() {
        assert!(settings(&[]).unwrap().upstream.is_none());
        // Without UPSTREAM_URL the other UPSTREAM_* variables change nothing.
        assert!(
            settings(&[("UPSTREAM_PATHS", "/shop")])
                .unwrap()
                .upstream
                .is_none()
        );
        let u = gateway(&[]).unwrap().upstream.unwrap();
        assert_eq!(u.base, "http://127.0.0.1:8081");
        assert_eq!(u.paths, guarded(&[("/", 7)]));
        assert_eq!(u.connect_timeout, Duration::from_millis(2000));
        assert_eq!(u.first_byte_timeout, Duration::from_millis(30_000));
        assert_eq!(u.tunnel_recheck, Duration::from_millis(1000));
        assert_eq!(u.grant_cache, Duration::from_millis(1000));
        assert!(u.identity_key.is_none());
        let u = gateway(&[
            ("UPSTREAM_URL", "http://origin.internal/"),
            ("UPSTREAM_PATHS", "/shop/, /tickets ,/shop"),
            ("UPSTREAM_CONNECT_TIMEOUT_MS", "150"),
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "900"),
            ("UPSTREAM_TUNNEL_RECHECK_MS", "60000"),
            ("UPSTREAM_GRANT_CACHE_MS", "0"),
            (
                "UPSTREAM_IDENTITY_KEY",
                "origin-shared-key-0123456789abcdef",
            ),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(u.base, "http://origin.internal");
        assert_eq!(u.paths, guarded(&[("/tickets", 7), ("/shop", 7)]));
        assert_eq!(u.connect_timeout, Duration::from_millis(150));
        assert_eq!(u.first_byte_timeout, Duration::from_millis(900));
        assert_eq!(u.tunnel_recheck, Duration::from_secs(60));
        assert_eq!(u.grant_cache, Duration::ZERO);
        assert!(!format!("{u:?}").contains("origin-shared-key"));
        assert_eq!(u.ca_file, None);
        let u = gateway(&[
            ("UPSTREAM_URL", "HTTPS://shop.example:8443/"),
            ("UPSTREAM_CA_FILE", "/etc/shop-ca.pem"),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(u.base, "https://shop.example:8443");
        assert_eq!(
            u.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/shop-ca.pem"))
        );
        assert_eq!(u.client_cert, None);
        let u = gateway(&[
            ("UPSTREAM_URL", "https://shop.example"),
            ("UPSTREAM_CLIENT_CERT", "/etc/gw.pem"),
            ("UPSTREAM_CLIENT_KEY", "/etc/gw.key"),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(
            u.client_cert,
            Some(ClientCert {
                chain: "/etc/gw.pem".into(),
                key: "/etc/gw.key".into()
            })
        );
    }

    #[test]
    fn a_client_certificate_comes_with_its_key_and_for_https_only() {
        assert_eq!(
            refused(&[
                ("UPSTREAM_URL", "https://shop.example"),
                ("UPSTREAM_CLIENT_CERT", "/etc/gw.pem"),
            ]),
            "UPSTREAM_CLIENT_KEY"
        );
        assert_eq!(
            refused(&[
                ("UPSTREAM_URL", "https://shop.example"),
                ("UPSTREAM_CLIENT_KEY", "/etc/gw.key"),
            ]),
            "UPSTREAM_CLIENT_CERT"
        );
        let e = gateway(&[
            ("UPSTREAM_URL", "http://shop.example"),
            ("UPSTREAM_CLIENT_CERT", "/etc/gw.pem"),
            ("UPSTREAM_CLIENT_KEY", "/etc/gw.key"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "UPSTREAM_URL");
        assert!(e.to_string().contains("https://"), "{e}");
    }

    fn guarded(paths: &[(&str, u64)]) -> Vec<GuardedPath> {
        paths
            .iter()
            .map(|(prefix, concert)| GuardedPath {
                prefix: (*prefix).to_owned(),
                concert: ConcertId::new(*concert).unwrap(),
            })
            .collect()
    }

    #[test]
    fn each_prefix_may_name_its_own_line_and_the_longest_match_comes_first() {
        let u = gateway(&[(
            "UPSTREAM_PATHS",
            "/=7, /tour/a=9 ,/tour/b = 12,/shop,/shop/",
        )])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(
            u.paths,
            guarded(&[("/tour/a", 9), ("/tour/b", 12), ("/shop", 7), ("/", 7)])
        );
        // Every prefix names its line: no default needed.
        let u = settings(&[
            ("UPSTREAM_URL", "http://127.0.0.1:8081"),
            ("UPSTREAM_PATHS", "/a=3,/b=4"),
        ])
        .unwrap()
        .upstream
        .unwrap();
        assert_eq!(u.paths, guarded(&[("/a", 3), ("/b", 4)]));
        // A default line that guards none of them is refused, not silently ignored.
        assert_eq!(
            refused(&[("UPSTREAM_PATHS", "/a=3,/b=4")]),
            "UPSTREAM_CONCERT_ID"
        );
        assert!(gateway(&[("UPSTREAM_PATHS", "/a=7,/b=4")]).is_ok());
        // A prefix without a line of its own, and no default: the default is what is missing.
        let e = settings(&[
            ("UPSTREAM_URL", "http://127.0.0.1:8081"),
            ("UPSTREAM_PATHS", "/a=3,/b"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "UPSTREAM_CONCERT_ID");
        assert!(e.to_string().contains("/b=<concert id>"), "{e}");
        for paths in ["/a=0", "/a=x", "/a=", "=3", "/a=3=4", "/a=3,/a=4", "/v1=3"] {
            assert_eq!(
                refused(&[("UPSTREAM_PATHS", paths)]),
                "UPSTREAM_PATHS",
                "{paths}"
            );
        }
        // The same prefix twice for the same line is one prefix.
        let u = gateway(&[("UPSTREAM_PATHS", "/a=7,/a/=7")])
            .unwrap()
            .upstream
            .unwrap();
        assert_eq!(u.paths, guarded(&[("/a", 7)]));
    }

    /// The variable a gateway configuration with `vars` is refused for.
    fn refused(vars: &[(&str, &str)]) -> &'static str {
        gateway(vars).unwrap_err().var
    }

    #[test]
    fn bad_gateway_values_name_the_variable() {
        let e = gateway(&[
            ("UPSTREAM_URL", "http://shop.example"),
            ("UPSTREAM_CA_FILE", "/etc/shop-ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "UPSTREAM_URL");
        assert!(e.to_string().contains("https://"), "{e}");
        for url in [
            "shop.example:80",
            "ftp://shop.example",
            "https://",
            "https://shop.example/base",
            "http://",
            "http://user:pw@shop.example",
            "http://shop.example/base",
            "http://shop.example/?x=1",
        ] {
            assert_eq!(refused(&[("UPSTREAM_URL", url)]), "UPSTREAM_URL", "{url}");
        }
        let e = settings(&[("UPSTREAM_URL", "http://127.0.0.1:8081")]).unwrap_err();
        assert_eq!(e.var, "UPSTREAM_CONCERT_ID");
        for id in ["0", "abc", "-3", "1.5"] {
            assert_eq!(
                refused(&[("UPSTREAM_CONCERT_ID", id)]),
                "UPSTREAM_CONCERT_ID"
            );
        }
        for paths in [
            "shop",
            "/v1",
            "/concerts/3",
            "/assets",
            "/docs/x",
            "/shop/../v1",
            "//shop",
            "/shop//x",
            "/sh op",
            "/shop?x",
            "/%2e%2e",
            "/shop\\x",
            " , ",
        ] {
            assert_eq!(
                refused(&[("UPSTREAM_PATHS", paths)]),
                "UPSTREAM_PATHS",
                "{paths}"
            );
        }
        assert_eq!(
            refused(&[("UPSTREAM_CONNECT_TIMEOUT_MS", "0")]),
            "UPSTREAM_CONNECT_TIMEOUT_MS"
        );
        assert_eq!(
            refused(&[("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "soon")]),
            "UPSTREAM_FIRST_BYTE_TIMEOUT_MS"
        );
        assert_eq!(
            refused(&[("UPSTREAM_TUNNEL_RECHECK_MS", "10")]),
            "UPSTREAM_TUNNEL_RECHECK_MS",
            "below 100 ms a tunnel would cost a check per tenth of a second"
        );
        assert_eq!(
            refused(&[("UPSTREAM_GRANT_CACHE_MS", "61000")]),
            "UPSTREAM_GRANT_CACHE_MS",
            "a grant trusted for over a minute would outlive a lost announcement too long"
        );
        let e = gateway(&[("UPSTREAM_IDENTITY_KEY", "short-key")]).unwrap_err();
        assert_eq!(e.var, "UPSTREAM_IDENTITY_KEY");
        assert!(!e.to_string().contains("short-key"));
    }
}
