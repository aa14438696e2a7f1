//! A lean HTTP/1.1 client on hyper's connection API: one keep-alive connection per worker, no
//! pooling layer, so the load tool spends as little CPU as possible beside the gateway.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    /// The last answer's `Retry-After` (seconds), as a well-behaved client honours it.
    pub retry_after: Option<u64>,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, Error> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
            retry_after: None,
        })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                b
            }
            None => Bytes::new(),
        };
        self.sender.ready().await?;
        let resp = self.sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status();
        self.retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn get(
        &mut self,
        path: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, Bytes), Error> {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post_json(
        &mut self,
        path: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), Error> {
        self.send_json(Method::POST, path, token, json).await
    }

    pub async fn put_json(
        &mut self,
        path: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), Error> {
        self.send_json(Method::PUT, path, token, json).await
    }

    async fn send_json(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), Error> {
        let body = Bytes::from(json.to_string());
        self.send(method, path, token, Some(body)).await
    }
}

/// The `error.code` of an error body, if it has one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}
