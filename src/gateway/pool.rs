//! Keep-alive connections to the origin, each driven by the forward that holds it.
//!
//! Why not hyper-util's pooled client: it gives every connection a task of its own, so a
//! forward hands its request to that task through a channel and gets the answer back through
//! another — task wake-ups (often across worker threads) and pool bookkeeping around an
//! exchange that takes microseconds on a private network. Here a connection belongs to one
//! forward at a time and runs in that forward's task: hyper's HTTP/1 `Connection` (the driver)
//! is polled beside the response head and then beside the response body, so writing the
//! request, reading the head and streaming the body all happen where the visitor's own
//! connection is served. When the answer has been read to its end the connection goes back to
//! the pool; an answer left unfinished (the visitor went away, a timeout) closes it.
//!
//! Idle connections are not polled. One the origin closed meanwhile is noticed when it is taken
//! (its driver is polled once and finds the close) and, should the close race the request, the
//! unsent request comes back from hyper and goes once more on a new connection — as hyper-util's
//! client retries a request its pooled connection never sent.
//!
//! The two bodies of an exchange live here too: `Upload`, the visitor's request body on its way
//! out, and `Forwarded`, the origin's answer body on its way back.

use super::transport::{OriginStream, Tls};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections are closed after this long — below nginx's default keep-alive timeout
/// (75 s), so we rarely pick a connection the origin is about to close.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Idle connections kept: enough for a busy instance's steady state.
const MAX_IDLE: usize = 512;

type Connection = http1::Connection<TokioIo<OriginStream>, Upload>;
/// Boxed: hyper's connection state is hundreds of bytes, and a pooled connection changes hands
/// several times per forward (out of the pool, into the answer's body, back into the pool).
type Driver = Box<Connection>;

/// One HTTP/1.1 connection: the handle requests are sent through, and the driver that does the
/// connection's reading and writing whenever it is polled.
struct Conn {
    sender: http1::SendRequest<Upload>,
    driver: Driver,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Why an exchange with the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The TCP connect failed (refused, unreachable, no such host).
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TCP connect (and, for an https origin, the TLS handshake) took longer than the
    /// connect timeout.
    #[error("connect timed out")]
    ConnectTimedOut,
    /// The TLS handshake failed: most often a certificate that does not verify (wrong name,
    /// expired, an unknown CA).
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The HTTP exchange failed: the origin closed, reset or answered with something not HTTP,
    /// or the request's own body failed.
    #[error(transparent)]
    Http(hyper::Error),
}

/// The origin's connections.
pub struct Pool {
    /// `host:port` to connect to.
    target: String,
    /// For an https origin.
    tls: Option<Tls>,
    connect_timeout: Duration,
    /// Newest at the back: taken from the back, aged out from the front.
    idle: Mutex<VecDeque<Idle>>,
}

impl Pool {
    pub fn new(target: String, tls: Option<Tls>, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool {
            target,
            tls,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    /// Sends `request` (its URI in origin form, its `Host` set) and returns the answer once
    /// its head is in; the body streams from the connection as it is read.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Upload>,
    ) -> Result<Response<Forwarded>, Failure> {
        if let Some(conn) = self.take_idle() {
            match self.exchange(conn, request).await {
                Ok(answer) => return Ok(answer),
                // The origin closed the idle connection before our request went out on it.
                Err((Some(unsent), _)) => request = unsent,
                Err((None, e)) => return Err(Failure::Http(e)),
            }
        }
        let conn = self.connect().await?;
        self.exchange(conn, request)
            .await
            .map_err(|(_, e)| Failure::Http(e))
    }

    /// Sends a request that asks for an upgrade (`Connection: upgrade`) on a connection of its
    /// own, never pooled: if the origin switches protocols the connection becomes the tunnel's
    /// (`hyper::upgrade::on` the answer), and otherwise it closes once the answer is read. Its
    /// driver runs in a task of its own, because it must go on until the upgrade is handed over.
    pub async fn send_upgrade(
        &self,
        request: Request<Upload>,
    ) -> Result<Response<Incoming>, Failure> {
        let Conn { mut sender, driver } = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = (*driver).with_upgrades().await {
                tracing::debug!(error = %e, "an upgrade's origin connection ended with an error");
            }
        });
        sender.send_request(request).await.map_err(Failure::Http)
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let stream = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| Failure::ConnectTimedOut)??;
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Http)?;
        Ok(Conn {
            sender,
            driver: Box::new(driver),
        })
    }

    /// A TCP connection to the origin, with TLS on it for an https origin.
    async fn open(&self) -> Result<OriginStream, Failure> {
        let tcp = TcpStream::connect(&self.target)
            .await
            .map_err(Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(OriginStream::Plain(tcp)),
            Some(tls) => tls.handshake(tcp).await.map_err(Failure::Tls),
        }
    }

    /// One request on `conn`. On failure, the request comes back if it was never sent.
    async fn exchange(
        self: &Arc<Self>,
        conn: Conn,
        request: Request<Upload>,
    ) -> Result<Response<Forwarded>, (Option<Request<Upload>>, hyper::Error)> {
        let Conn { mut sender, driver } = conn;
        let mut driver = Some(driver);
        let mut answer = std::pin::pin!(sender.try_send_request(request));
        let head = poll_fn(|cx| {
            drive(&mut driver, cx);
            // Only the driver, just polled with our waker, completes the answer (or, once
            // dropped, cancels it): the answer itself need not wake us too.
            answer
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        })
        .await;
        match head {
            Ok(response) => Ok(response.map(|body| Forwarded {
                body,
                link: driver.is_some().then(|| Link {
                    sender,
                    driver,
                    pool: self.clone(),
                }),
            })),
            Err(mut e) => {
                let unsent = e.take_message();
                Err((unsent, e.into_error()))
            }
        }
    }

    /// The newest idle connection that is still open.
    fn take_idle(&self) -> Option<Conn> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_back()?;
            if idle.since.elapsed() >= IDLE_FOR {
                // Everything older is staler still.
                let stale =
                    std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
                drop(stale);
                return None;
            }
            let mut driver = Some(idle.conn.driver);
            // A close (or stray bytes) the origin sent while the connection sat idle.
            drive(&mut driver, &mut Context::from_waker(Waker::noop()));
            if let Some(driver) = driver
                && idle.conn.sender.is_ready()
            {
                return Some(Conn {
                    sender: idle.conn.sender,
                    driver,
                });
            }
        }
    }

    fn put(&self, conn: Conn) {
        let now = Instant::now();
        let mut gone = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            while idle
                .front()
                .is_some_and(|i| now.duration_since(i.since) >= IDLE_FOR || idle.len() >= MAX_IDLE)
            {
                gone.extend(idle.pop_front());
            }
            idle.push_back(Idle { conn, since: now });
        }
        // Closing sockets is a system call each: not under the lock.
        drop(gone);
    }
}

/// Polls the driver; once it has finished (the connection closed or failed) it is dropped, which
/// fails or hands back whatever request was waiting on it.
fn drive(driver: &mut Option<Driver>, cx: &mut Context<'_>) {
    if let Some(d) = driver
        && Pin::new(&mut **d).poll(cx).is_ready()
    {
        *driver = None;
    }
}

/// A connection lent to one answer, and where it goes back to.
struct Link {
    sender: http1::SendRequest<Upload>,
    /// `None` once the connection has finished.
    driver: Option<Driver>,
    pool: Arc<Pool>,
}

impl Link {
    /// The answer has been read to its end: the connection goes back to the pool if it is ready
    /// for another request (not when the origin said `Connection: close`, or the request's body
    /// is still being sent).
    fn release(self) {
        let Link {
            sender,
            mut driver,
            pool,
        } = self;
        // Lets the driver finish the message and ask for the next one.
        drive(&mut driver, &mut Context::from_waker(Waker::noop()));
        if let Some(driver) = driver
            && sender.is_ready()
        {
            pool.put(Conn { sender, driver });
        }
    }
}

/// The origin's answer body, streamed as the connection reads it; the connection goes back to
/// the pool when the body is complete.
pub struct Forwarded {
    body: Incoming,
    link: Option<Link>,
}

impl Body for Forwarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // The body is fed only by its connection's driver, which runs here.
        if let Some(link) = &mut this.link {
            drive(&mut link.driver, cx);
            if link.driver.is_none() {
                // Finished: whatever it read is in the body already; nothing to give back.
                this.link = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.link = None;
                false
            }
            Poll::Pending => false,
        };
        if done && let Some(link) = this.link.take() {
            link.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        // hyper's server drops a body it knows is complete without polling it to its end (an
        // empty one, or after its last counted byte): the connection can still be reused.
        if let Some(link) = self.link.take()
            && self.body.is_end_stream()
        {
            link.release();
        }
    }
}

/// The visitor's request body on its way to the origin: hyper's `Incoming`, passed frame by
/// frame (nothing is collected), with a flag raised if it fails — a client that breaks off an
/// upload must not be reported as a broken origin.
pub struct Upload {
    body: Option<Incoming>,
    failed: Arc<AtomicBool>,
}

impl Upload {
    pub fn new(body: Option<Incoming>) -> (Self, Arc<AtomicBool>) {
        let failed = Arc::new(AtomicBool::new(false));
        (
            Upload {
                body,
                failed: failed.clone(),
            },
            failed,
        )
    }
}

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}
