//! `--http ADDR`: the operational endpoints of a running misql — `GET /metrics` (Prometheus),
//! `GET /healthz` (200 while the process runs) and `GET /readyz` (200 when every sync copies or
//! streams; 503 with a JSON body naming the syncs that do not, and why) — and, with a token,
//! control: `POST /syncs/NAME/stop|start|refresh` ([`control`]).

pub mod control;
mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};

use crate::sync::status::{Registry, SyncPhase};
use crate::{Error, Result};

/// A sync retrying for longer than this makes the process not ready.
pub const RETRYING_NOT_READY: Duration = Duration::from_secs(60);

/// Serves the endpoints on `addr` in the background; fails at once if `addr` cannot be bound.
pub async fn serve(
    addr: &str,
    registry: Registry,
    control: Option<control::Control>,
) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::user(format!("--http {addr}: cannot listen there: {e}"))
            .with_hint("give a free address, e.g. --http 0.0.0.0:9187")
    })?;
    let local = listener.local_addr().map_err(|e| Error::io(format!("--http {addr}"), e))?;
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(metrics::SyncMetrics::new(
        registry.clone(),
        SystemTime::now(),
    )));
    let state = Arc::new((metrics, registry, control));
    crate::listen::serve(listener, "--http", move |request| {
        let state = state.clone();
        async move {
            let (metrics, registry, control) = &*state;
            Ok::<_, Infallible>(respond(&request, metrics, registry, control).await)
        }
    });
    tracing::info!("serving /metrics, /healthz and /readyz on http://{local}");
    Ok(local)
}

async fn respond<B>(
    request: &Request<B>,
    metrics: &prometheus_client::registry::Registry,
    registry: &Registry,
    control: &Option<control::Control>,
) -> Response<Full<Bytes>> {
    if let Some(statement) = control::statement(request.uri().path()) {
        if request.method() != hyper::Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "POST only\n".into());
        }
        let authorization = request.headers().get(hyper::header::AUTHORIZATION);
        let authorization = authorization.and_then(|v| v.to_str().ok());
        let (status, body) = control::handle(control.as_ref(), authorization, statement).await;
        return reply(status, "application/json", body);
    }
    if request.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, metrics) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness(registry);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            reply(status, "application/json", body)
        }
        _ => {
            reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics, /healthz or /readyz\n".into())
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Why a following sync is not ready when the source's change history it has left (its
/// margin) is under a tenth of the history: it is about to lose its place in the stream.
fn history_short(status: &crate::sync::status::SyncStatus, now: SystemTime) -> Option<String> {
    let (window, margin) = (status.history_window?, status.history_margin(now)?);
    (margin < window / 10).then(|| {
        format!(
            "{} s behind, and the source keeps {} s of change history: under a tenth of it is \
             left before the sync must copy its collection again",
            status.lag(now).as_secs(),
            window.as_secs()
        )
    })
}

/// Whether every sync copies or streams (a sync retrying for less than a minute still counts),
/// and the JSON body saying so: `{"ready": bool, "not_ready": [{"sync", "phase", "why"}]}`.
pub fn readiness(registry: &Registry) -> (bool, String) {
    let now = SystemTime::now();
    let mut not_ready = Vec::new();
    for (name, status) in registry.all() {
        let why = match status.phase {
            // A sync stopped on purpose (STOP SYNC), or standing by for another process's
            // lease, does not make the process unready.
            SyncPhase::Copying | SyncPhase::Streaming => history_short(&status, now),
            SyncPhase::Stopped | SyncPhase::Standby | SyncPhase::Dropped | SyncPhase::Copied => {
                None
            }
            SyncPhase::Retrying => status
                .retrying_since
                .and_then(|since| now.duration_since(since).ok())
                .filter(|&d| d > RETRYING_NOT_READY)
                .map(|d| {
                    format!(
                        "retrying for {} s: {}",
                        d.as_secs(),
                        status.last_error.clone().unwrap_or_default()
                    )
                }),
            SyncPhase::Starting => Some("starting".to_string()),
            SyncPhase::Failed => Some(status.last_error.clone().unwrap_or_else(|| "failed".into())),
        };
        if let Some(why) = why {
            not_ready.push(serde_json::json!({
                "sync": name, "phase": status.phase.to_string(), "why": why,
            }));
        }
    }
    let ready = not_ready.is_empty();
    (ready, serde_json::json!({ "ready": ready, "not_ready": not_ready }).to_string() + "\n")
}
