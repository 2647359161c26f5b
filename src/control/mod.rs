//! The operators' HTTP endpoint (`[control] address`, 127.0.0.1:9153 by
//! default): `GET /metrics` (Prometheus), `GET /healthz`, `GET /stats` (JSON)
//! and `POST /cache/flush` (everything, `?name=NAME` or `?suffix=ZONE`).
//!
//! It is bounded like the DNS side: clients outside the allow list are closed
//! at once, at most [`MAX_CONNECTIONS`] connections are served at a time, and
//! each has [`CONNECTION_TIMEOUT`] to finish, so a stuck scraper cannot pile
//! up tasks. The DNS path never waits for it.

mod client;
pub mod prometheus;
mod stats;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use client::{ControlError, request};

use crate::Stats;
use crate::guard::{Acl, Prefix};

/// Control connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The most one control connection may take, request headers to last byte.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// For a request's headers to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The control endpoint, bound and not yet serving.
pub struct Control {
    listener: TcpListener,
    acl: Acl,
}

impl Control {
    /// Binds `address`; must be called inside a tokio runtime.
    pub fn bind(address: SocketAddr, allow: Option<&[Prefix]>) -> io::Result<Control> {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(Control {
            listener: TcpListener::from_std(listener)?,
            acl: Acl::new(allow),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, stats: Stats, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "control endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !self.acl.admits(peer.ip()) {
                tracing::debug!(%peer, "control endpoint: client not allowed");
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::debug!(%peer, "control endpoint: too many connections");
                continue;
            };
            let stats = stats.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let stats = stats.clone();
                    async move { Ok::<_, Infallible>(route(&stats, &request)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(permit);
            });
        }
    }
}

fn route(stats: &Stats, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let (allowed, allow_header) = match path {
        "/metrics" | "/healthz" | "/stats" => (Method::GET, "GET"),
        "/cache/flush" => (Method::POST, "POST"),
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz, /stats or POST /cache/flush\n",
            );
        }
    };
    if request.method() != allowed {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static(allow_header));
        return response;
    }
    match path {
        "/metrics" => body(
            StatusCode::OK,
            prometheus::CONTENT_TYPE,
            prometheus::render(stats),
        ),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/stats" => json(StatusCode::OK, &stats::to_json(stats)),
        _ => match stats::flush(stats, request.uri().query()) {
            Ok(flushed) => json(StatusCode::OK, &flushed),
            Err(reason) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": reason }),
            ),
        },
    }
}

fn text(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", text.to_owned())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = value.to_string();
    text.push('\n');
    body(status, "application/json", text)
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
