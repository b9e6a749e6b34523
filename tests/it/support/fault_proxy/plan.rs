//! What the [`super::FaultProxy`] does to which requests: a [`Plan`] gives the requests of a
//! [`Route`] [`Fault`]s, a queue of them in turn, or a share of all of them at random for as
//! long as the proxy runs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::support::data::Rng;

/// A fault injected into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request (the upstream applies it), then answer this status (500, 502, 504)
    /// instead of the upstream's answer.
    StatusAfter(u16),
    /// Answer 503 Service Unavailable without forwarding the request.
    UnavailableBefore,
    /// Answer 401 Unauthorized (an expired token, in the Iceberg REST error model) without
    /// forwarding the request.
    UnauthorizedBefore,
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
            Fault::UnauthorizedBefore => "401 before".into(),
            Fault::SlowDownBefore => "503 SlowDown before".into(),
            Fault::DropAfter => "drop after".into(),
            Fault::DelayAfter(_) => "delay after".into(),
            Fault::CutUpload(_) => "cut upload".into(),
        }
    }

    /// Whether the request reaches the upstream.
    pub(super) fn forwards(&self) -> bool {
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

    /// Every request, whatever its method and path.
    pub fn all(label: &str) -> Self {
        Self { label: label.into(), method: "*".into(), path: Box::new(|_| true) }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method)) && (self.path)(path)
    }
}

/// Faults for the requests of one [`Route`]: every `k`-th matching request (k = 1 unless
/// [`Plan::every`] says otherwise) takes the next planned fault, in order, until none is left;
/// or, for a [`Plan::chaos`], a share of the matching requests drawn at random takes the next of
/// its faults, round and round.
pub struct Plan {
    route: Route,
    every: usize,
    faults: VecDeque<Fault>,
    matched: usize,
    chaos: Option<Chaos>,
}

/// A share of the requests faulted at random, for as long as the proxy runs.
struct Chaos {
    percent: u64,
    rng: Rng,
    faults: Vec<Fault>,
    next: usize,
}

impl Plan {
    /// A plan for `route`, with no faults yet.
    pub fn on(route: Route) -> Self {
        Self { route, every: 1, faults: VecDeque::new(), matched: 0, chaos: None }
    }

    /// `percent` % of the requests of `route` (drawn by a generator seeded with `seed`) take one
    /// of `faults`, each in turn, with no end: such faults are never pending.
    pub fn chaos(route: Route, percent: u64, seed: u64, faults: Vec<Fault>) -> Self {
        assert!(!faults.is_empty() && percent <= 100, "chaos needs faults and a percentage");
        let chaos = Chaos { percent, rng: Rng::new(seed), faults, next: 0 };
        Self { chaos: Some(chaos), ..Self::on(route) }
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

    /// Planned faults not injected yet.
    pub(super) fn pending(&self) -> usize {
        self.faults.len()
    }

    /// The route's name, for the log.
    pub(super) fn label(&self) -> &str {
        &self.route.label
    }

    /// The fault for this request, if it matches and its turn has come.
    pub(super) fn take(&mut self, method: &str, path: &str) -> Option<Fault> {
        let wants = self.chaos.is_some() || !self.faults.is_empty();
        if !wants || !self.route.matches(method, path) {
            return None;
        }
        if let Some(chaos) = &mut self.chaos {
            if chaos.rng.below(100) >= chaos.percent {
                return None;
            }
            chaos.next += 1;
            return Some(chaos.faults[(chaos.next - 1) % chaos.faults.len()].clone());
        }
        self.matched += 1;
        if self.matched.is_multiple_of(self.every) { self.faults.pop_front() } else { None }
    }
}
