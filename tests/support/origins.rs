//! Origins for gateway-mode tests, both on loopback:
//!
//! - `EchoOrigin`: a small hyper server in the test process that echoes what it received
//!   (method, path, query, headers), streams large bodies, counts uploads, stalls on request,
//!   and can hold admitted visitors "inside" until the test lets them go.
//! - `Nginx`: Debian's nginx serving static files from a temporary directory, with a generated
//!   configuration, on a free port; installed with apt-get when missing; stopped by its PID
//!   (the `Child` handle) and killed on drop.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

type OriginBody = UnsyncBoxBody<Bytes, Infallible>;

/// What the echo origin saw of visitors held inside (`/shop/hold`).
#[derive(Default)]
struct Inside {
    now: HashSet<u64>,
    max: usize,
}

struct OriginState {
    inside: Mutex<Inside>,
    entered: mpsc::UnboundedSender<u64>,
    released: watch::Receiver<Vec<u64>>,
    requests: AtomicUsize,
    connections: AtomicUsize,
}

pub struct EchoOrigin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    entered: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
    release: watch::Sender<Vec<u64>>,
    server: tokio::task::JoinHandle<()>,
}

impl EchoOrigin {
    /// Starts on 127.0.0.1:0 in the current runtime.
    pub async fn start() -> EchoOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered_tx, entered_rx) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(Vec::new());
        let state = Arc::new(OriginState {
            inside: Mutex::new(Inside::default()),
            entered: entered_tx,
            released,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let st = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(serve(&st, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EchoOrigin {
            addr,
            state,
            entered: tokio::sync::Mutex::new(entered_rx),
            release,
            server,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached this origin so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// TCP connections this origin accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The next user to enter `/shop/hold` (bounded wait).
    pub async fn next_entered(&self) -> u64 {
        let mut rx = self.entered.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a visitor entered the origin within 10 s")
            .expect("origin running")
    }

    /// Lets a user held inside `/shop/hold` go (its request is answered).
    pub fn release(&self, user: u64) {
        self.release.send_modify(|r| r.push(user));
    }

    /// Users inside now, and the most ever inside at once.
    pub fn inside(&self) -> (usize, usize) {
        let i = self.state.inside.lock().unwrap();
        (i.now.len(), i.max)
    }
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<OriginBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

fn query_u64(req: &Request<Incoming>, name: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

/// The user id in a verified-looking identity header (the test checks the signature itself).
fn identity_user(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get("x-queuegate-identity")?
        .to_str()
        .ok()?
        .split(';')
        .find_map(|kv| kv.strip_prefix("user="))?
        .parse()
        .ok()
}

async fn serve(st: &OriginState, req: Request<Incoming>) -> Response<OriginBody> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    match path.as_str() {
        // Streams `bytes` bytes in `chunk`-byte chunks, pausing `pause_us` between chunks.
        "/shop/big" => {
            let total = query_u64(&req, "bytes", 1 << 20);
            let chunk = query_u64(&req, "chunk", 64 * 1024).max(1);
            let pause = Duration::from_micros(query_u64(&req, "pause_us", 0));
            let block = Bytes::from(vec![b'x'; chunk as usize]);
            let stream = futures::stream::unfold(total, move |left| {
                let block = block.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    let n = left.min(block.len() as u64);
                    Some((
                        Ok::<_, Infallible>(Frame::data(block.slice(..n as usize))),
                        left - n,
                    ))
                }
            });
            let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
            r.headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
            r
        }
        // Reads the upload frame by frame (pausing `pause_us` per frame), answers the count.
        "/shop/upload" => {
            let pause = Duration::from_micros(query_u64(&req, "pause_us", 0));
            let mut body = req.into_body();
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            received += d.len() as u64;
                        }
                    }
                    Err(_) => return full(StatusCode::BAD_REQUEST, "upload broke off"),
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            full(StatusCode::OK, json!({ "received": received }).to_string())
        }
        // Never answers in time (the gateway's first-byte timeout must fire first).
        "/shop/stall" => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            full(StatusCode::OK, "too late")
        }
        // Holds the identified visitor inside until the test releases them.
        "/shop/hold" => {
            let Some(user) = identity_user(&req) else {
                return full(StatusCode::BAD_REQUEST, "no identity");
            };
            {
                let mut i = st.inside.lock().unwrap();
                i.now.insert(user);
                i.max = i.max.max(i.now.len());
            }
            let _ = st.entered.send(user);
            let mut released = st.released.clone();
            let _ = released.wait_for(|r| r.contains(&user)).await;
            st.inside.lock().unwrap().now.remove(&user);
            full(StatusCode::OK, json!({ "user": user }).to_string())
        }
        // Everything else: echo the request, with hop-by-hop headers in the answer that the
        // gateway must drop.
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                headers
                    .entry(k.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            }
            let echo: Value = json!({
                "method": req.method().as_str(),
                "path": path,
                "query": req.uri().query(),
                "headers": headers,
            });
            let mut r = full(StatusCode::OK, echo.to_string());
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("x-origin", "echo".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-origin-hop", "1".parse().unwrap());
            h.insert("connection", "keep-alive, x-origin-hop".parse().unwrap());
            h.insert("proxy-authenticate", "Basic".parse().unwrap());
            r
        }
    }
}

/// Debian's nginx on a free loopback port, serving `www/` of its own temporary directory.
pub struct Nginx {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Serving https with a certificate for 127.0.0.1 from the test CA at `ca()`.
    tls: bool,
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx, installed with apt-get when it is missing (the tests need a real origin).
fn ensure_nginx() -> PathBuf {
    if let Some(p) = nginx_binary() {
        return p;
    }
    let _ = Command::new("apt-get")
        .args(["update", "-qq"])
        .stdout(Stdio::null())
        .status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "nginx"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    nginx_binary().expect("nginx is installed (apt-get install nginx did not provide it)")
}

impl Nginx {
    /// Starts nginx serving `files` (relative path → contents) on a free port.
    pub fn start(files: &[(&str, &[u8])]) -> Nginx {
        Nginx::launch(files, false, false)
    }

    /// The same over https, with a certificate for `127.0.0.1` issued by a CA made for this
    /// origin alone (its certificate at `ca()`), made with Debian's `openssl`.
    pub fn start_tls(files: &[(&str, &[u8])]) -> Nginx {
        Nginx::launch(files, true, false)
    }

    /// The same over https, also demanding a client certificate issued by the same CA (mutual
    /// TLS): a connection without one gets nginx's `400` page instead of the files.
    pub fn start_mutual_tls(files: &[(&str, &[u8])]) -> Nginx {
        Nginx::launch(files, true, true)
    }

    /// A client certificate (PEM) and its key, issued by the test CA.
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.pem"), self.dir.join("client.key"))
    }

    /// The test CA's certificate (PEM) of an https origin.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn launch(files: &[(&str, &[u8])], tls: bool, mutual: bool) -> Nginx {
        let bin = ensure_nginx();
        let dir = std::env::temp_dir().join(format!("qg-nginx-{}", uuid::Uuid::new_v4().simple()));
        let www = dir.join("www");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        for (path, contents) in files {
            let f = www.join(path);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, contents).unwrap();
        }
        if tls {
            make_certificates(&dir);
        }
        let port = super::common::servers::free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, tls, mutual)).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            port,
            dir,
            child: Some(child),
            tls,
        };
        n.wait_ready(Duration::from_secs(10));
        n
    }

    fn wait_ready(&mut self, limit: Duration) {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < limit, "nginx not ready after {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops nginx by its PID and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test CA and a server certificate for 127.0.0.1 it issued, in a temporary directory of
/// their own (removed on drop), for origins served over TLS.
pub struct Certificates {
    pub dir: PathBuf,
    /// The CA's certificate (PEM): what `UPSTREAM_CA_FILE` names.
    pub ca: PathBuf,
}

impl Certificates {
    pub fn make() -> Certificates {
        let dir = std::env::temp_dir().join(format!("qg-certs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        Certificates {
            ca: dir.join("ca.pem"),
            dir,
        }
    }

    /// The server's certificate chain, for a rustls server.
    pub fn chain(&self) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        tokio_rustls::rustls::pki_types::CertificateDer::pem_file_iter(self.dir.join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The server's private key, for a rustls server.
    pub fn key(&self) -> tokio_rustls::rustls::pki_types::PrivateKeyDer<'static> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        tokio_rustls::rustls::pki_types::PrivateKeyDer::from_pem_file(self.dir.join("server.key"))
            .unwrap()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it issued (`server.pem`,
/// `server.key`) in `dir`, with `openssl`.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ec = |rest: &[&str]| -> Vec<String> {
        [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]
        .iter()
        .chain(rest)
        .map(|a| a.to_string())
        .collect()
    };
    // A key and a certificate `name`.pem for `subject`, issued by the CA under `name`.ext.
    let issued = |name: &str, subject: &str| -> [Vec<String>; 2] {
        let mut request = vec!["req".to_string()];
        request.extend(ec(&[
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ]));
        let sign = [
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]
        .map(str::to_owned)
        .to_vec();
        [request, sign]
    };
    let mut ca = vec!["req".to_string(), "-x509".to_string()];
    ca.extend(ec(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=queuegate test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    let mut steps = vec![ca];
    steps.extend(issued("server", "/CN=127.0.0.1"));
    // A client certificate from the same CA, for origins that demand one.
    steps.extend(issued("client", "/CN=queuegate gateway"));
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A single-process nginx (no master, no privilege drop: it runs as whoever started it) that
/// keeps everything in `dir`.
fn config(dir: &Path, port: u16, tls: bool, mutual: bool) -> String {
    let d = dir.display();
    let listen = if tls {
        let clients = if mutual {
            format!(
                "
        ssl_client_certificate {d}/ca.pem;
        ssl_verify_client on;"
            )
        } else {
            String::new()
        };
        format!(
            "listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;{clients}"
        )
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ text/html html; text/css css; application/octet-stream bin; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {{
        {listen}
        root {d}/www;
        location / {{ }}
    }}
}}
"
    )
}
