//! Long-lived streams on raw connections.
//!
//! An open `text/event-stream` response lives for minutes, and hyper keeps an 8 KiB read and an
//! 8 KiB write buffer for every connection it serves — 160 MiB for 10,000 waiting fans doing
//! nothing. A connection whose *first* request starts with one of the configured prefixes is
//! therefore served here instead: the request head is read into a short-lived buffer, parsed
//! with `httparse`, run through the very same pipeline as every other request, and the answer
//! is written by hand. Afterwards only the socket and the body's channel stay in memory. The
//! answer is `Connection: close` (the stream ends the connection), which EventSource expects.

use super::handler::Handler;
use super::lifecycle::Lifecycle;
use super::response::Resp;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request heads larger than this are refused, as on the hyper path.
const MAX_HEAD: usize = 32 * 1024;

/// True when the connection's first bytes start with one of `prefixes`. Waits at most `limit`
/// for them; anything else (or nothing) goes to hyper.
pub async fn starts_with_any(stream: &TcpStream, prefixes: &[&[u8]], limit: Duration) -> bool {
    let Some(longest) = prefixes.iter().map(|p| p.len()).max() else {
        return false;
    };
    let mut first = vec![0u8; longest];
    let deadline = Instant::now() + limit;
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        let seen = &first[..n];
        if prefixes
            .iter()
            .any(|p| seen.len() >= p.len() && seen.starts_with(p))
        {
            return true;
        }
        // Decide as soon as no prefix can match any more; otherwise wait for more bytes.
        if !prefixes.iter().any(|p| p.len() > n && p.starts_with(seen)) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Serves one connection's single request to its end.
pub async fn serve<H: Handler>(
    handler: &H,
    lifecycle: &Lifecycle,
    mut stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) {
    let Some(head) = read_head(&mut stream, limit).await else {
        return; // too slow, too large or gone: nothing worth answering
    };
    let Some(parts) = parse_head(&head) else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    drop(head);
    let resp = Box::pin(super::pipeline::handle(
        handler, lifecycle, parts, None, peer,
    ))
    .await;
    write_response(&mut stream, resp).await;
    let _ = stream.shutdown().await;
}

/// The request head as `http` parts (no body: these routes take none).
fn parse_head(head: &[u8]) -> Option<hyper::http::request::Parts> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let mut builder = hyper::Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

/// Writes the status line and headers, then the body as it comes; the connection closes after.
async fn write_response(stream: &mut TcpStream, resp: Resp) {
    let (parts, mut body) = resp.into_parts();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }
    if let Some(len) = body.size_hint().exact() {
        head.push_str(&format!("content-length: {len}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    drop(parts);
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    drop(head);
    // Stream the body until it ends — or until the client goes away: a closed event stream
    // must free its slot at once, not at the next keep-alive write.
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && stream.write_all(&data).await.is_err()
                    {
                        return;
                    }
                }
                _ => return,
            },
            // The client sends nothing after its request: any read result means it hung up
            // (or broke the protocol); either way the stream is over.
            _ = stream.read(&mut probe) => return,
        }
    }
}

/// Reads up to the end of the request head ("\r\n\r\n"); `None` when it does not come in time
/// or grows past `MAX_HEAD`. The buffer is dropped as soon as the head is parsed.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = Instant::now() + limit;
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(buf);
        }
        if buf.len() >= MAX_HEAD {
            let _ = stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return None;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_into_parts() {
        let parts = parse_head(
            b"GET /v1/queue/events?ticket=abc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
        )
        .unwrap();
        assert_eq!(parts.method, hyper::Method::GET);
        assert_eq!(parts.uri.path(), "/v1/queue/events");
        assert_eq!(parts.uri.query(), Some("ticket=abc"));
        assert_eq!(parts.headers["authorization"], "Bearer t");
        assert!(parse_head(b"garbage\r\n\r\n").is_none());
    }
}
