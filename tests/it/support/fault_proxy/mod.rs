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

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, timeout};

mod http;
mod plan;

use http::{Framing, Head, Peer};
pub use plan::{Fault, Plan, Route};

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
            .find_map(|plan| plan.take(method, path).map(|f| (f, plan.label().to_string())))?;
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
        self.shared.plans().iter().map(Plan::pending).sum()
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

    /// Answers a fault that does not forward: 503 (plain or SlowDown), 401, or a cut upload.
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
            Fault::UnauthorizedBefore => token_expired(close),
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

/// A 401 as an Iceberg REST catalog answers a request whose token expired.
fn token_expired(close: bool) -> Vec<u8> {
    let body = r#"{"error":{"message":"fault proxy: the token expired","type":"NotAuthorizedException","code":401}}"#;
    answer(401, "Unauthorized", "application/json", body, close)
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
