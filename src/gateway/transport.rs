//! The origin's transport: plain TCP for an `http://` origin, TLS over it for `https://`.
//!
//! Most shops sit behind HTTPS, and a hosted one is reachable no other way, so the gateway
//! speaks TLS to such an origin: rustls, verifying the certificate against Mozilla's roots
//! (compiled in, so a slim image needs no system store) or, with `UPSTREAM_CA_FILE`, against a
//! private CA only; the name checked is the host of `UPSTREAM_URL`, which is also the SNI sent.
//! ALPN offers HTTP/1.1 alone, the one protocol the pool speaks. With `UPSTREAM_CLIENT_CERT`
//! and `UPSTREAM_CLIENT_KEY` the gateway shows that certificate to an origin that asks for one
//! (mutual TLS): the origin can then refuse every connection that does not come from a gateway,
//! which is what keeps the line from being walked around.
//!
//! Both kinds are one `OriginStream`, so a pooled connection and a tunnel's connection are the
//! same type whatever the origin's scheme.

use crate::config::ClientCert;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// What an `https://` origin's connections are made with.
pub struct Tls {
    connector: TlsConnector,
    /// The name the certificate must carry (a DNS name or an IP address), also sent as SNI.
    name: ServerName<'static>,
}

impl Tls {
    /// For the origin `host` (as in the URL; an IPv6 address in brackets), trusting `ca_file`'s
    /// certificates if given, else the public roots, and showing `client` when the origin asks.
    /// Fails on an unreadable or empty CA file, and on a client certificate or key that cannot
    /// be read or do not belong together.
    pub fn new(
        host: &str,
        ca_file: Option<&Path>,
        client: Option<&ClientCert>,
    ) -> Result<Tls, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("UPSTREAM_URL: {host} is not a name TLS can verify: {e}"))?;
        let mut roots = RootCertStore::empty();
        match ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                for cert in pem_certificates("UPSTREAM_CA_FILE", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| unreadable("UPSTREAM_CA_FILE", path, &e))?;
                }
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let (chain, key) = client_identity(c)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "UPSTREAM_CLIENT_CERT {} with UPSTREAM_CLIENT_KEY {}: {e}",
                        c.chain.display(),
                        c.key.display()
                    )
                })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake on a connected socket.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<OriginStream> {
        let tls = self.connector.connect(self.name.clone(), tcp).await?;
        Ok(OriginStream::Tls(Box::new(tls)))
    }
}

/// The client certificate's chain (leaf first) and private key, read from their PEM files.
fn client_identity(
    c: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = pem_certificates("UPSTREAM_CLIENT_CERT", &c.chain)?;
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| unreadable("UPSTREAM_CLIENT_KEY", &c.key, &e))?;
    Ok((chain, key))
}

/// Every certificate in the PEM file `path` (named by the variable `var`); at least one.
fn pem_certificates(var: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(var, path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(var, path, &e))?;
    if certs.is_empty() {
        return Err(unreadable(var, path, &"holds no PEM certificate"));
    }
    Ok(certs)
}

/// The one-line error for a file named by a variable: `VAR path: reason`.
fn unreadable(var: &str, path: &Path, e: &dyn std::fmt::Display) -> String {
    format!("{var} {}: {e}", path.display())
}

/// A connection to the origin. (Boxed TLS: its state is kilobytes, a socket is a few words.)
pub enum OriginStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for OriginStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for OriginStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            OriginStream::Plain(s) => s.is_write_vectored(),
            OriginStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_flush(cx),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ca_files_and_client_certificates_are_checked_up_front() {
        assert!(Tls::new("shop.example", None, None).is_ok());
        assert!(Tls::new("127.0.0.1", None, None).is_ok());
        assert!(Tls::new("[::1]", None, None).is_ok());
        let dir = std::env::temp_dir().join(format!("qg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = Tls::new("shop.example", Some(&missing), None)
            .err()
            .unwrap();
        assert!(e.starts_with("UPSTREAM_CA_FILE"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Tls::new("shop.example", Some(&empty), None).err().unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let client = |chain: &Path, key: &Path| ClientCert {
            chain: chain.to_owned(),
            key: key.to_owned(),
        };
        let e = Tls::new("shop.example", None, Some(&client(&missing, &missing)))
            .err()
            .unwrap();
        assert!(e.starts_with("UPSTREAM_CLIENT_CERT"), "{e}");
        let e = Tls::new("shop.example", None, Some(&client(&empty, &missing)))
            .err()
            .unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
