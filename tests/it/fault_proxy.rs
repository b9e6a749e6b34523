//! The fault proxy itself ([`crate::support::fault_proxy`]), against a tiny upstream: it passes
//! requests unchanged, and injects each planned fault as planned, counted.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fault_proxy::{Fault, FaultProxy, Plan, Route};

use crate::support::fault_scenario::DELAY;

// ---------------------------------------------------------------------------------------------
// The proxy itself
// ---------------------------------------------------------------------------------------------

/// A tiny keep-alive HTTP/1.1 upstream: answers each request `<METHOD> <path> <body bytes>`
/// (chunked when the path ends in `/chunked`) and records it; serves at most 32 connections.
struct Echo {
    uri: String,
    /// `(connection number, "<METHOD> <path> <body bytes>")` for each request received.
    seen: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().take(32).enumerate() {
                let record = record.clone();
                std::thread::spawn(move || echo_connection(n, stream.unwrap(), &record));
            }
        });
        Self { uri, seen }
    }

    fn seen(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }

    fn saw(&self, line: &str) -> bool {
        self.seen().iter().any(|(_, l)| l == line)
    }
}

fn echo_connection(n: usize, stream: TcpStream, seen: &Mutex<Vec<(usize, String)>>) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some((start, headers)) = read_head(&mut reader) {
        let body = read_body(&mut reader, &headers);
        let mut words = start.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let line = format!("{method} {path} {}", body.len());
        seen.lock().unwrap().push((n, line.clone()));
        let answer = if path.ends_with("/chunked") {
            let (a, b) = line.split_at(line.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}", line.len())
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A start line and lower-cased headers, `None` at the end of the stream.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut start = String::new();
    if reader.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            return Some((start.trim_end().to_string(), headers));
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// A body framed by Content-Length or chunked encoding (or none).
fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return body; // no trailers in these tests
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length = header("content-length").map_or(0, |v| v.parse().unwrap());
    body.resize(length, 0);
    reader.read_exact(&mut body).unwrap();
    body
}

/// Sends `request` on `stream` and reads one answer: status and body.
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> (u16, String) {
    stream.get_mut().write_all(request).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut BufReader<TcpStream>) -> (u16, String) {
    let (start, headers) = read_head(stream).expect("an answer");
    let status = start.split(' ').nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8(read_body(stream, &headers)).unwrap())
}

#[test]
fn the_proxy_passes_keep_alive_requests_with_length_chunked_and_expect_bodies_unchanged() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(&echo.uri);
    let tcp = TcpStream::connect(proxy.uri().trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = BufReader::new(tcp);
    let host = "Host: test\r\n";

    let get = format!("GET /a?x=1 HTTP/1.1\r\n{host}\r\n");
    assert_eq!(exchange(&mut conn, get.as_bytes()), (200, "GET /a?x=1 0".into()));

    let big = vec![b'x'; 300_000];
    let mut put = format!("PUT /b HTTP/1.1\r\n{host}Content-Length: {}\r\n\r\n", big.len());
    put.push_str(std::str::from_utf8(&big).unwrap());
    assert_eq!(exchange(&mut conn, put.as_bytes()), (200, "PUT /b 300000".into()));

    let chunk = "y".repeat(70_000);
    let post = format!(
        "POST /c HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{chunk}\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    assert_eq!(exchange(&mut conn, post.as_bytes()), (200, "POST /c 140000".into()));

    let expect =
        format!("PUT /d HTTP/1.1\r\n{host}Expect: 100-continue\r\nContent-Length: 10\r\n\r\n");
    conn.get_mut().write_all(expect.as_bytes()).unwrap();
    let mut interim = String::new();
    conn.read_line(&mut interim).unwrap();
    assert_eq!(interim.trim_end(), "HTTP/1.1 100 Continue");
    conn.read_line(&mut interim).unwrap();
    assert_eq!(exchange(&mut conn, b"0123456789"), (200, "PUT /d 10".into()));

    let chunked = format!("GET /e/chunked HTTP/1.1\r\n{host}\r\n");
    assert_eq!(exchange(&mut conn, chunked.as_bytes()), (200, "GET /e/chunked 0".into()));

    let seen = echo.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|(n, _)| *n == seen[0].0), "one upstream connection: {seen:?}");
    assert_eq!(proxy.requests(), 5);
    assert!(proxy.injected().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_planned_fault_reaches_the_client_as_planned_and_is_counted() {
    let echo = Echo::start();
    let proxy = FaultProxy::start(&echo.uri);
    let route = |path: &'static str, method: &str| Route::new(path, method, move |p| p == path);
    proxy.plan(Plan::on(route("/status", "POST")).inject(Fault::StatusAfter(502), 1));
    proxy.plan(Plan::on(route("/unavailable", "POST")).inject(Fault::UnavailableBefore, 1));
    proxy.plan(Plan::on(route("/expired", "POST")).inject(Fault::UnauthorizedBefore, 1));
    proxy.plan(Plan::on(route("/slow", "PUT")).inject(Fault::SlowDownBefore, 1));
    proxy.plan(Plan::on(route("/drop", "POST")).inject(Fault::DropAfter, 1));
    proxy.plan(Plan::on(route("/delay", "POST")).inject(Fault::DelayAfter(DELAY), 1));
    proxy.plan(Plan::on(route("/cut", "PUT")).inject(Fault::CutUpload(1000), 1));
    proxy.plan(Plan::on(route("/every", "GET")).every(3).inject(Fault::StatusAfter(500), 2));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let url = |path: &str| format!("{}{path}", proxy.uri());

    let answer = http.post(url("/status")).body("{}").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 502);
    assert!(echo.saw("POST /status 2"), "a 502 after forwarding reached the upstream");

    let answer = http.post(url("/unavailable")).body("{}").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(!echo.saw("POST /unavailable 2"), "a 503 before forwarding did not");

    let answer = http.post(url("/expired")).body("{}").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert!(answer.text().await.unwrap().contains("NotAuthorizedException"));
    assert!(!echo.saw("POST /expired 2"), "a 401 before forwarding did not reach the upstream");

    let answer = http.put(url("/slow")).body("data").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    assert!(!echo.saw("PUT /slow 4"));

    let dropped = http.post(url("/drop")).body("{}").send().await;
    assert!(dropped.is_err(), "a dropped connection is an error: {dropped:?}");
    assert!(echo.saw("POST /drop 2"));

    let delayed = http.post(url("/delay")).body("{}").send().await;
    assert!(delayed.as_ref().is_err_and(|e| e.is_timeout()), "{delayed:?}");
    assert!(echo.saw("POST /delay 2"));

    let cut = http.put(url("/cut")).body(vec![b'z'; 100_000]).send().await;
    assert!(cut.is_err(), "a cut upload is an error: {cut:?}");
    assert!(!echo.seen().iter().any(|(_, l)| l.starts_with("PUT /cut")));

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(http.get(url("/every")).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500], "every 3rd request, twice");

    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.abandoned(), 1, "the delayed client's timeout was noticed");
    assert_eq!(proxy.pending(), 0);
    let kinds = ["502 after", "503 before", "503 SlowDown before", "drop after", "delay after"];
    for kind in kinds.into_iter().chain(["401 before", "cut upload"]) {
        assert_eq!(proxy.injected().get(kind), Some(&1), "{kind}: {:?}", proxy.injected());
    }
    assert_eq!(proxy.injected_of(&Fault::StatusAfter(500)), 2);
}
