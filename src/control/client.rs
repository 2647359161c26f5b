//! The client side of the control endpoint, for `punctual stats` and
//! `punctual flush`: one HTTP/1.1 request, bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot reach the control endpoint at {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the control endpoint at {address} did not answer within {timeout:?}")]
    Timeout {
        address: SocketAddr,
        timeout: Duration,
    },
    #[error("HTTP error talking to the control endpoint: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// Sends `method path` to `address`; returns the status code and the body.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), ControlError> {
    tokio::time::timeout(timeout, exchange(address, method, path))
        .await
        .unwrap_or(Err(ControlError::Timeout { address, timeout }))
}

async fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String), ControlError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| ControlError::Connect { address, source })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, address.to_string())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    connection.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
