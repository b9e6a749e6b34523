//! A fault-injecting HTTP/1.1 proxy on loopback, put between misql and an upstream (the
//! SeaweedFS REST catalog or its S3 endpoint) to prove that catalog and storage faults are
//! survived.
//!
//! It forwards requests transparently (the `Host` header and every other header unchanged, so
//! S3 signatures stay valid; keep-alive connections; `Content-Length` and chunked bodies both
//! ways; `Expect: 100-continue` answered by the proxy itself) and injects the faults of its
//! [`Plan`]s into the requests they match:
//!
//! ```ignore
//! let proxy = FaultProxy::start(&weed.rest_uri);
//! proxy.plan(Plan::on(Route::rest_commit("orders")).every(2).inject(Fault::StatusAfter(502), 3));
//! // ... ATTACH the catalog at proxy.uri(), run the sync ...
//! assert_eq!(proxy.pending(), 0, "every planned fault happened: {:?}", proxy.injected());
//! ```
//!
//! What misql's clients send, as seen through it (`FAULT_PROXY_TRACE=1` logs every request):
//! reqwest (REST catalog) and opendal (S3) send `Content-Length` bodies, no `Expect` and no
//! chunked uploads; S3 requests are signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (no
//! `aws-chunked` streaming signatures), and the `Host` they signed is the proxy's.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections are served at once, heads and chunk lines
//! have size limits, bodies are streamed through a fixed buffer, every read and write times out
//! after [`IO_TIMEOUT`], and the proxy stops after [`MAX_LIFETIME`] or when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, timeout};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest wait for one read or write, and longest idle time of a connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The proxy stops accepting connections after this long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest request or response head.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;
/// Bytes moved per read.
const BUFFER: usize = 64 * 1024;
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long a cut upload waits for body bytes that may never come.
const CUT_WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/// A fault injected into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request (the upstream applies it), then answer this status (500, 502, 504)
    /// instead of the upstream's answer.
    StatusAfter(u16),
    /// Answer 503 Service Unavailable without forwarding the request.
    UnavailableBefore,
    /// Answer 503 with an S3 `SlowDown` error document without forwarding the request.
    SlowDownBefore,
    /// Forward the request, wait for the upstream's answer, then close the client's connection
    /// without answering.
    DropAfter,
    /// Forward the request, then hold the upstream's answer back this long (past the client's
    /// timeout: [`FaultProxy::abandoned`] counts the clients that gave up meanwhile).
    DelayAfter(Duration),
    /// Read at most this many bytes of the request body, then close the connection; nothing
    /// is forwarded.
    CutUpload(usize),
}

impl Fault {
    /// The kind of fault, as counted by [`FaultProxy::injected`]: `500 after`, `503 before`,
    /// `503 SlowDown before`, `drop after`, `delay after`, `cut upload`.
    pub fn kind(&self) -> String {
        match self {
            Fault::StatusAfter(status) => format!("{status} after"),
            Fault::UnavailableBefore => "503 before".into(),
            Fault::SlowDownBefore => "503 SlowDown before".into(),
            Fault::DropAfter => "drop after".into(),
            Fault::DelayAfter(_) => "delay after".into(),
            Fault::CutUpload(_) => "cut upload".into(),
        }
    }

    /// Whether the request reaches the upstream.
    fn forwards(&self) -> bool {
        matches!(self, Fault::StatusAfter(_) | Fault::DropAfter | Fault::DelayAfter(_))
    }
}

/// Which requests a [`Plan`] applies to: a method and a predicate on the path (without the
/// query string).
pub struct Route {
    label: String,
    method: String,
    path: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl Route {
    /// Requests with `method` (case-insensitive) whose path satisfies `path`; `label` names the
    /// route in the log.
    pub fn new(
        label: &str,
        method: &str,
        path: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self { label: label.into(), method: method.to_ascii_uppercase(), path: Box::new(path) }
    }

    /// A REST catalog commit to `table` in any namespace:
    /// `POST .../namespaces/<ns>/tables/<table>`.
    pub fn rest_commit(table: &str) -> Self {
        let suffix = format!("/tables/{table}");
        Self::new(&format!("REST commit to {table}"), "POST", move |path| {
            path.contains("/namespaces/") && path.ends_with(&suffix)
        })
    }

    /// An S3 upload of a table's data, delete or manifest file: `PUT` of a path under
    /// `/data/` or `/metadata/` ending in `.parquet` or `.avro` (multipart parts included).
    pub fn s3_table_file_put() -> Self {
        Self::new("S3 PUT of a table file", "PUT", |path| {
            (path.contains("/data/") || path.contains("/metadata/"))
                && (path.ends_with(".parquet") || path.ends_with(".avro"))
        })
    }

    /// An S3 upload of a position delete file: `PUT` of a path ending in `-deletes.parquet`
    /// (misql's name for them).
    pub fn s3_delete_file_put() -> Self {
        Self::new("S3 PUT of a delete file", "PUT", |path| path.ends_with("-deletes.parquet"))
    }

    /// An OAuth2 token exchange with the REST catalog: `POST .../v1/oauth/tokens`.
    pub fn rest_token() -> Self {
        Self::new("REST token", "POST", |path| path.ends_with("/oauth/tokens"))
    }

    /// An S3 request on a bucket itself, not on an object in it: `GET /<bucket>` (path-style),
    /// which is how a listing (`ListObjectsV2`, `?list-type=2&prefix=...`) is sent.
    pub fn s3_list() -> Self {
        Self::new("S3 LIST", "GET", |path| !path.trim_matches('/').contains('/'))
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && (self.path)(path)
    }
}

/// Faults for the requests of one [`Route`]: every `k`-th matching request (k = 1 unless
/// [`Plan::every`] says otherwise) takes the next planned fault, in order, until none is left.
pub struct Plan {
    route: Route,
    every: usize,
    faults: VecDeque<Fault>,
    matched: usize,
}

impl Plan {
    /// A plan for `route`, with no faults yet.
    pub fn on(route: Route) -> Self {
        Self { route, every: 1, faults: VecDeque::new(), matched: 0 }
    }

    /// Faults only every `k`-th matching request (the k-th, 2k-th, ...); the others pass.
    pub fn every(mut self, k: usize) -> Self {
        assert!(k >= 1, "every(k) needs k >= 1");
        self.every = k;
        self
    }

    /// Adds `fault`, `times` times, to the end of the queue.
    pub fn inject(mut self, fault: Fault, times: usize) -> Self {
        self.faults.extend(std::iter::repeat_n(fault, times));
        self
    }

    /// The fault for this request, if it matches and its turn has come.
    fn take(&mut self, method: &str, path: &str) -> Option<Fault> {
        if self.faults.is_empty() || !self.route.matches(method, path) {
            return None;
        }
        self.matched += 1;
        if self.matched.is_multiple_of(self.every) { self.faults.pop_front() } else { None }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy has seen and done.
#[derive(Debug, Default)]
struct Stats {
    requests: usize,
    injected: BTreeMap<String, usize>,
    abandoned: usize,
}

/// State shared by the connections.
struct Shared {
    /// `:port -> upstream`, for the log.
    name: String,
    upstream: SocketAddr,
    plans: Mutex<Vec<Plan>>,
    stats: Mutex<Stats>,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn plans(&self) -> MutexGuard<'_, Vec<Plan>> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the request and picks its fault, if any (the first plan that has one).
    fn fault_for(&self, method: &str, path: &str) -> Option<Fault> {
        self.stats().requests += 1;
        let mut plans = self.plans();
        let (fault, label) = plans
            .iter_mut()
            .find_map(|plan| plan.take(method, path).map(|f| (f, plan.route.label.clone())))?;
        *self.stats().injected.entry(fault.kind()).or_default() += 1;
        eprintln!("fault proxy {}: {} on {method} {path} ({label})", self.name, fault.kind());
        Some(fault)
    }
}

/// A running proxy on `127.0.0.1:<free port>`, stopped when dropped.
pub struct FaultProxy {
    uri: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, any path ignored) on its own thread and
    /// runtime, so it serves whatever the test's runtime is doing.
    pub fn start(upstream: &str) -> Self {
        let upstream_addr = resolve(upstream);
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            name: format!(":{port} -> {upstream_addr}"),
            upstream: upstream_addr,
            plans: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
        });
        let (stop, stopped) = oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || run(listener, serving, stopped))
            .expect("start the proxy thread");
        Self {
            uri: format!("http://127.0.0.1:{port}"),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`: the address to give the client instead of the upstream's.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Adds `plan`; a request takes its fault from the first plan (in the order added) whose
    /// route matches and whose turn it is.
    pub fn plan(&self, plan: Plan) {
        self.shared.plans().push(plan);
    }

    /// Planned faults not injected yet.
    pub fn pending(&self) -> usize {
        self.shared.plans().iter().map(|p| p.faults.len()).sum()
    }

    /// Injected faults by kind ([`Fault::kind`]).
    pub fn injected(&self) -> BTreeMap<String, usize> {
        self.shared.stats().injected.clone()
    }

    /// Injected faults of `fault`'s kind.
    pub fn injected_of(&self, fault: &Fault) -> usize {
        self.shared.stats().injected.get(&fault.kind()).copied().unwrap_or(0)
    }

    /// Requests received (faulted or not).
    pub fn requests(&self) -> usize {
        self.shared.stats().requests
    }

    /// Delayed answers whose client closed the connection before the delay was over.
    pub fn abandoned(&self) -> usize {
        self.shared.stats().abandoned
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The socket address of `http://host:port[/...]`.
fn resolve(uri: &str) -> SocketAddr {
    let authority = uri.strip_prefix("http://").unwrap_or(uri);
    let authority = authority.split('/').next().unwrap_or(authority);
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("the proxy upstream `{uri}` is not a reachable http://host:port"))
}

/// The proxy thread: accepts connections until told to stop or [`MAX_LIFETIME`] is over.
fn run(listener: std::net::TcpListener, shared: Arc<Shared>, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the proxy's runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        tokio::select! {
            _ = stopped => {}
            _ = timeout(MAX_LIFETIME, accept(listener, shared)) => {}
        }
    });
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: let some connections end first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let name = shared.name.clone();
            if let Err(e) = Connection::new(shared, client).serve().await {
                // Also when a client stops reading an answer it does not need (a broken pipe).
                eprintln!("fault proxy {name}: connection closed early: {e}");
            }
            drop(permit);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Reading HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// A socket with the bytes read from it but not consumed yet.
struct Peer {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn new(tcp: TcpStream) -> Self {
        Self { tcp, buf: Vec::new() }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0; BUFFER];
        let n = timeout(IO_TIMEOUT, self.tcp.read(&mut chunk)).await.map_err(timed_out)??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes `bytes`.
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        timeout(IO_TIMEOUT, self.tcp.write_all(bytes)).await.map_err(timed_out)?
    }

    /// Bytes up to and including the first `end`, at most `limit` of them; `None` on a clean
    /// end of stream before any byte.
    async fn until(&mut self, end: &[u8], limit: usize) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return Ok(Some(self.buf.drain(..at + end.len()).collect()));
            }
            if self.buf.len() > limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "header line too long"));
            }
            if self.fill().await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
    }

    /// A request or response head, `None` when the peer closed between messages.
    async fn head(&mut self) -> io::Result<Option<Head>> {
        self.until(b"\r\n\r\n", MAX_HEAD).await?.map(Head::parse).transpose()
    }

    /// One line (a chunk size or a trailer), with its CRLF.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        self.until(b"\r\n", MAX_LINE).await?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    /// Moves `n` bytes to `out` (or drops them without `out`).
    async fn copy(&mut self, mut n: u64, mut out: Option<&mut Peer>) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let bytes: Vec<u8> = self.buf.drain(..take).collect();
            if let Some(out) = out.as_deref_mut() {
                out.send(&bytes).await?;
            }
            n -= take as u64;
        }
        Ok(())
    }

    /// Moves everything up to the end of the stream to `out` (or drops it).
    async fn copy_to_end(&mut self, mut out: Option<&mut Peer>) -> io::Result<()> {
        loop {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Ok(());
            }
            let bytes = std::mem::take(&mut self.buf);
            if let Some(out) = out.as_deref_mut() {
                out.send(&bytes).await?;
            }
        }
    }

    /// Moves a body framed as `framing` to `out` (or drops it).
    async fn relay(&mut self, framing: Framing, mut out: Option<&mut Peer>) -> io::Result<()> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.copy(n, out).await,
            Framing::ToEnd => self.copy_to_end(out).await,
            Framing::Chunked => loop {
                let line = self.line().await?;
                if let Some(out) = out.as_deref_mut() {
                    out.send(&line).await?;
                }
                let size = chunk_size(&line)?;
                if size == 0 {
                    return self.trailers(out).await;
                }
                self.copy(size + 2, out.as_deref_mut()).await?;
            },
        }
    }

    /// The trailer section after the last chunk, up to its empty line.
    async fn trailers(&mut self, mut out: Option<&mut Peer>) -> io::Result<()> {
        loop {
            let line = self.line().await?;
            if let Some(out) = out.as_deref_mut() {
                out.send(&line).await?;
            }
            if line == b"\r\n" {
                return Ok(());
            }
        }
    }

    /// Reads and drops up to `n` bytes, waiting at most [`CUT_WAIT`] for more.
    async fn swallow(&mut self, n: usize) {
        let deadline = Instant::now() + CUT_WAIT;
        while self.buf.len() < n {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => break,
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
    }

    /// Whether the peer has closed its side (checked without waiting).
    fn closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self.tcp.try_read(&mut probe) {
            Ok(0) => true,
            Ok(_) => {
                self.buf.push(probe[0]);
                false
            }
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

fn timed_out(_: tokio::time::error::Elapsed) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("no progress within {IO_TIMEOUT:?}"))
}

/// The size of the chunk a chunk-size line announces (extensions ignored).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).unwrap_or("");
    let hex = text.trim_end().split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {text:?}")))
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Up to the end of the connection (responses only).
    ToEnd,
}

/// A request or response head: its raw lines, and the start line and headers parsed.
#[derive(Debug)]
struct Head {
    /// Each line with its CRLF, the final empty line included.
    lines: Vec<Vec<u8>>,
    /// Request: method, target, version. Response: version, status, reason.
    start: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = raw.as_slice();
        while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
            lines.push(rest[..at + 2].to_vec());
            rest = &rest[at + 2..];
        }
        let text = |line: &[u8]| String::from_utf8_lossy(line).trim_end().to_string();
        let first = text(lines.first().ok_or_else(|| bad("empty head"))?);
        let mut parts = first.splitn(3, ' ').map(str::to_string);
        let mut next = || parts.next().unwrap_or_default();
        let start = [next(), next(), next()];
        if start[1].is_empty() {
            return Err(bad(&format!("bad start line {first:?}")));
        }
        let headers = lines[1..]
            .iter()
            .filter_map(|line| {
                let line = text(line);
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
            })
            .collect();
        Ok(Self { lines, start, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the sender closes the connection after this message.
    fn closes(&self, version: &str) -> bool {
        self.has_token("connection", "close")
            || (version == "HTTP/1.0" && !self.has_token("connection", "keep-alive"))
    }

    /// The head as bytes, without the headers named in `drop`.
    fn bytes_without(&self, drop: &[&str]) -> Vec<u8> {
        let kept = self.lines.iter().enumerate().filter(|(i, line)| {
            let name = String::from_utf8_lossy(line);
            let name = name.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            *i == 0 || !drop.contains(&name.as_str())
        });
        kept.flat_map(|(_, line)| line.iter().copied()).collect()
    }

    /// A request's body framing (RFC 9112, 6.3).
    fn request_framing(&self) -> io::Result<Framing> {
        if self.header("transfer-encoding").is_some() {
            return match self.has_token("transfer-encoding", "chunked") {
                true => Ok(Framing::Chunked),
                false => Err(io::Error::new(io::ErrorKind::InvalidData, "request body to the end")),
            };
        }
        self.length().map(|n| n.map_or(Framing::Empty, Framing::Length))
    }

    /// A response's body framing, given the request's method.
    fn response_framing(&self, method: &str) -> io::Result<Framing> {
        let status = self.status();
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::Empty);
        }
        if self.header("transfer-encoding").is_some() {
            return Ok(match self.has_token("transfer-encoding", "chunked") {
                true => Framing::Chunked,
                false => Framing::ToEnd,
            });
        }
        self.length().map(|n| n.map_or(Framing::ToEnd, Framing::Length))
    }

    fn length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|v| {
                v.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad Content-Length {v:?}"))
                })
            })
            .transpose()
    }

    fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// One client connection
// ---------------------------------------------------------------------------------------------

/// A client connection and the upstream connection its requests go to.
struct Connection {
    shared: Arc<Shared>,
    client: Peer,
    upstream: Option<Peer>,
}

/// One request as received.
struct Request {
    head: Head,
    method: String,
    path: String,
    framing: Framing,
    /// The client waits for `100 Continue` before sending the body.
    expects_continue: bool,
    /// The client closes after this exchange.
    closes: bool,
}

/// Whether the client connection stays open after an exchange.
enum Next {
    KeepOpen,
    Close,
}

impl Connection {
    fn new(shared: Arc<Shared>, client: TcpStream) -> Self {
        Self { shared, client: Peer::new(client), upstream: None }
    }

    /// Serves requests until either side closes.
    async fn serve(mut self) -> io::Result<()> {
        while let Some(request) = self.next_request().await? {
            self.trace(&request);
            let next = match self.shared.fault_for(&request.method, &request.path) {
                Some(fault) if !fault.forwards() => self.refuse(&request, &fault).await,
                Some(fault) => self.forward(&request, Some(&fault)).await,
                None => self.forward(&request, None).await,
            };
            let during = |e: io::Error| {
                io::Error::new(e.kind(), format!("{} {}: {e}", request.method, request.path))
            };
            if matches!(next.map_err(during)?, Next::Close) {
                break;
            }
        }
        Ok(())
    }

    /// With `FAULT_PROXY_TRACE` set, logs the request and how its body is framed.
    fn trace(&self, request: &Request) {
        if std::env::var_os("FAULT_PROXY_TRACE").is_none() {
            return;
        }
        let framing: Vec<String> = ["content-length", "transfer-encoding", "content-encoding"]
            .into_iter()
            .chain(["expect", "x-amz-content-sha256", "connection"])
            .filter_map(|name| request.head.header(name).map(|value| format!("{name}: {value}")))
            .collect();
        eprintln!(
            "fault proxy {}: {} {} [{}]",
            self.shared.name,
            request.method,
            request.path,
            framing.join("; ")
        );
    }

    /// The next request head, `None` when the client closed the connection. An upstream
    /// connection that its server closed meanwhile is dropped, not reused.
    async fn next_request(&mut self) -> io::Result<Option<Request>> {
        if self.client.buf.is_empty() {
            self.wait_readable().await?;
        }
        let Some(head) = self.client.head().await? else { return Ok(None) };
        let [method, target, version] = head.start.clone();
        let path = request_path(&target);
        let framing = head.request_framing()?;
        let expects_continue =
            head.has_token("expect", "100-continue") && framing != Framing::Empty;
        let closes = head.closes(&version);
        Ok(Some(Request { head, method, path, framing, expects_continue, closes }))
    }

    /// Waits until the client sends something (or closes), dropping the upstream connection if
    /// its server closes it meanwhile.
    async fn wait_readable(&mut self) -> io::Result<()> {
        let idle = tokio::time::sleep(IO_TIMEOUT);
        tokio::pin!(idle);
        loop {
            let Some(upstream) = self.upstream.as_mut() else {
                return tokio::select! {
                    ready = self.client.tcp.readable() => ready,
                    _ = &mut idle => Err(io::ErrorKind::TimedOut.into()),
                };
            };
            tokio::select! {
                ready = self.client.tcp.readable() => return ready,
                _ = upstream.tcp.readable() => {
                    if upstream.closed() || !upstream.buf.is_empty() {
                        self.upstream = None;
                    }
                }
                _ = &mut idle => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
    }

    /// Answers a fault that does not forward: 503 (plain or SlowDown), or a cut upload.
    async fn refuse(&mut self, request: &Request, fault: &Fault) -> io::Result<Next> {
        if let Fault::CutUpload(bytes) = fault {
            return self.cut(request, *bytes).await;
        }
        // A client waiting for 100 Continue sends no body: answer and close instead.
        let close = request.closes || request.expects_continue;
        if !request.expects_continue {
            self.client.relay(request.framing, None).await?;
        }
        let answer = match fault {
            Fault::SlowDownBefore => slow_down(&request.path, close),
            _ => plain(503, "Service Unavailable", "fault proxy: 503 before forwarding", close),
        };
        self.client.send(&answer).await?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    /// Reads at most `bytes` of the body (always less than all of it), then closes.
    async fn cut(&mut self, request: &Request, bytes: usize) -> io::Result<Next> {
        if request.expects_continue {
            self.client.send(CONTINUE).await?;
        }
        let limit = match request.framing {
            Framing::Length(n) => bytes.min(usize::try_from(n.saturating_sub(1)).unwrap_or(0)),
            _ => bytes,
        };
        self.client.swallow(limit).await;
        Ok(Next::Close)
    }

    /// Forwards the request and relays the answer, or the fault in its place.
    async fn forward(&mut self, request: &Request, fault: Option<&Fault>) -> io::Result<Next> {
        let Some(mut upstream) = self.upstream().await? else { return Ok(Next::Close) };
        upstream.send(&request.head.bytes_without(&["expect"])).await?;
        if request.expects_continue {
            self.client.send(CONTINUE).await?;
        }
        self.client.relay(request.framing, Some(&mut upstream)).await?;
        let head = final_head(&mut upstream, &mut self.client).await?;
        let framing = head.response_framing(&request.method)?;
        let upstream_closes = head.closes(&head.start[0]) || framing == Framing::ToEnd;
        let next = self.answer(request, fault, &head, framing, &mut upstream).await?;
        if matches!(next, Next::KeepOpen) && !upstream_closes {
            self.upstream = Some(upstream);
        }
        Ok(next)
    }

    /// The connection to the upstream: the kept one, or a new one. `None` (after answering 502)
    /// when the upstream cannot be reached.
    async fn upstream(&mut self) -> io::Result<Option<Peer>> {
        if let Some(upstream) = self.upstream.take() {
            return Ok(Some(upstream));
        }
        match TcpStream::connect(self.shared.upstream).await {
            Ok(tcp) => Ok(Some(Peer::new(tcp))),
            Err(e) => {
                eprintln!("fault proxy {}: upstream unreachable: {e}", self.shared.name);
                let answer = plain(502, "Bad Gateway", "fault proxy: upstream unreachable", true);
                self.client.send(&answer).await?;
                Ok(None)
            }
        }
    }

    /// Answers a forwarded request whose answer (`head`, body framed as `framing`) is waiting
    /// in `upstream`: relays it, or gives the fault in its place.
    async fn answer(
        &mut self,
        request: &Request,
        fault: Option<&Fault>,
        head: &Head,
        framing: Framing,
        upstream: &mut Peer,
    ) -> io::Result<Next> {
        match fault {
            Some(Fault::StatusAfter(status)) => {
                upstream.relay(framing, None).await?;
                let text = format!("fault proxy: {status} after forwarding");
                let answer = plain(*status, reason(*status), &text, request.closes);
                self.client.send(&answer).await?;
                Ok(if request.closes { Next::Close } else { Next::KeepOpen })
            }
            Some(Fault::DropAfter) => Ok(Next::Close),
            Some(Fault::DelayAfter(delay)) if !self.hold(*delay, request).await => Ok(Next::Close),
            _ => {
                self.client.send(&head.bytes_without(&[])).await?;
                upstream.relay(framing, Some(&mut self.client)).await?;
                let closes =
                    request.closes || head.closes(&head.start[0]) || framing == Framing::ToEnd;
                Ok(if closes { Next::Close } else { Next::KeepOpen })
            }
        }
    }

    /// Waits `delay` before an answer is relayed; false (and counted) if the client gave up
    /// meanwhile.
    async fn hold(&mut self, delay: Duration, request: &Request) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                read = self.client.fill(), if self.client.buf.len() < MAX_HEAD => {
                    if matches!(read, Ok(0) | Err(_)) {
                        self.shared.stats().abandoned += 1;
                        eprintln!(
                            "fault proxy {}: the client gave up on {} {} during the delay",
                            self.shared.name, request.method, request.path
                        );
                        return false;
                    }
                }
            }
        }
    }
}

/// The final (non-1xx) response head from `upstream`; interim answers other than
/// `100 Continue` (which the proxy gave itself) are passed on to `client`.
async fn final_head(upstream: &mut Peer, client: &mut Peer) -> io::Result<Head> {
    loop {
        let head = upstream.head().await?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the upstream closed without answering")
        })?;
        match head.status() {
            100 => {}
            101 => return Err(io::Error::other("protocol upgrades are not proxied")),
            102..=199 => client.send(&head.bytes_without(&[])).await?,
            _ => return Ok(head),
        }
    }
}

/// The path of a request target, without the query string (origin or absolute form).
fn request_path(target: &str) -> String {
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    };
    path.split('?').next().unwrap_or(path).to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}

/// A plain-text answer.
fn plain(status: u16, reason: &str, text: &str, close: bool) -> Vec<u8> {
    answer(status, reason, "text/plain", text, close)
}

/// S3's answer when a client should slow down.
fn slow_down(path: &str, close: bool) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate.</Message><Resource>{path}</Resource>\
         <RequestId>fault-proxy</RequestId></Error>"
    );
    answer(503, "Slow Down", "application/xml", &body, close)
}

fn answer(status: u16, reason: &str, content_type: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
