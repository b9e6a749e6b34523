//! Reading and writing HTTP/1.1 for the [`super::FaultProxy`]: a socket with its unread
//! bytes, message heads, and bodies framed by length, chunks or the end of the connection.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::{BUFFER, CUT_WAIT, IO_TIMEOUT, MAX_HEAD, MAX_LINE};

/// A socket with the bytes read from it but not consumed yet.
pub(super) struct Peer {
    pub(super) tcp: TcpStream,
    pub(super) buf: Vec<u8>,
}

impl Peer {
    pub(super) fn new(tcp: TcpStream) -> Self {
        Self { tcp, buf: Vec::new() }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0; BUFFER];
        let n = timeout(IO_TIMEOUT, self.tcp.read(&mut chunk)).await.map_err(timed_out)??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes `bytes`.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        timeout(IO_TIMEOUT, self.tcp.write_all(bytes)).await.map_err(timed_out)?
    }

    /// Bytes up to and including the first `end`, at most `limit` of them; `None` on a clean
    /// end of stream before any byte.
    pub(super) async fn until(&mut self, end: &[u8], limit: usize) -> io::Result<Option<Vec<u8>>> {
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
    pub(super) async fn head(&mut self) -> io::Result<Option<Head>> {
        self.until(b"\r\n\r\n", MAX_HEAD).await?.map(Head::parse).transpose()
    }

    /// One line (a chunk size or a trailer), with its CRLF.
    pub(super) async fn line(&mut self) -> io::Result<Vec<u8>> {
        self.until(b"\r\n", MAX_LINE).await?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    /// Moves `n` bytes to `out` (or drops them without `out`).
    pub(super) async fn copy(&mut self, mut n: u64, mut out: Option<&mut Peer>) -> io::Result<()> {
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
    pub(super) async fn copy_to_end(&mut self, mut out: Option<&mut Peer>) -> io::Result<()> {
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
    pub(super) async fn relay(
        &mut self,
        framing: Framing,
        mut out: Option<&mut Peer>,
    ) -> io::Result<()> {
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
    pub(super) async fn trailers(&mut self, mut out: Option<&mut Peer>) -> io::Result<()> {
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
    pub(super) async fn swallow(&mut self, n: usize) {
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
    pub(super) fn closed(&mut self) -> bool {
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
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Up to the end of the connection (responses only).
    ToEnd,
}

/// A request or response head: its raw lines, and the start line and headers parsed.
#[derive(Debug)]
pub(super) struct Head {
    /// Each line with its CRLF, the final empty line included.
    lines: Vec<Vec<u8>>,
    /// Request: method, target, version. Response: version, status, reason.
    pub(super) start: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn parse(raw: Vec<u8>) -> io::Result<Self> {
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

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the sender closes the connection after this message.
    pub(super) fn closes(&self, version: &str) -> bool {
        self.has_token("connection", "close")
            || (version == "HTTP/1.0" && !self.has_token("connection", "keep-alive"))
    }

    /// The head as bytes, without the headers named in `drop`.
    pub(super) fn bytes_without(&self, drop: &[&str]) -> Vec<u8> {
        let kept = self.lines.iter().enumerate().filter(|(i, line)| {
            let name = String::from_utf8_lossy(line);
            let name = name.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            *i == 0 || !drop.contains(&name.as_str())
        });
        kept.flat_map(|(_, line)| line.iter().copied()).collect()
    }

    /// A request's body framing (RFC 9112, 6.3).
    pub(super) fn request_framing(&self) -> io::Result<Framing> {
        if self.header("transfer-encoding").is_some() {
            return match self.has_token("transfer-encoding", "chunked") {
                true => Ok(Framing::Chunked),
                false => Err(io::Error::new(io::ErrorKind::InvalidData, "request body to the end")),
            };
        }
        self.length().map(|n| n.map_or(Framing::Empty, Framing::Length))
    }

    /// A response's body framing, given the request's method.
    pub(super) fn response_framing(&self, method: &str) -> io::Result<Framing> {
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

    pub(super) fn length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|v| {
                v.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad Content-Length {v:?}"))
                })
            })
            .transpose()
    }

    pub(super) fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
}
