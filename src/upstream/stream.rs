//! One kept-open TCP or TLS connection per `tcp://` or `tls://` upstream,
//! shared by every query to it (RFC 7766 §6.2.1: reuse, pipelining; RFC 7858
//! §3.4: one TLS handshake for many queries).
//!
//! Queries are framed with their 2-byte length and queued to one writer task,
//! so a caller that gives up mid-write can never leave half a frame on the
//! wire. One reader task splits replies into frames and hands each to the
//! query waiting on its ID; replies may come in any order (RFC 7766 §7). IDs
//! are random and unique among the queries in flight on the connection.
//!
//! The connection is closed when no query has waited on it for `idle_timeout`
//! (RFC 7766 §6.2.3), when a reply frame begun is not whole within
//! `frame_timeout` of its first byte (a peer dripping or stalling mid-message
//! would hold every reply queued behind it, RFC 7766 §8 framing), and on any
//! read or write error or EOF; its waiters then
//! fail and the next query opens a new one. A query whose connection closed
//! before its reply is retried once on a fresh connection (RFC 7766 §6.2.1.1:
//! the server may close an idle connection while a query is on its way).
//! Connecting and the handshake happen under a lock, so many queries at once
//! still make one connection; every wait is bounded by the caller's deadline.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::message::Question;
use crate::answer::Answer;
use crate::metrics::Metrics;
use crate::wire;

/// Queries in flight on one connection; one more is refused at once rather
/// than queued or sent on a second connection. The attempt fails with
/// [`FULL`]: the lookup moves on to its next server at once (a failed server
/// is not asked again in that lookup), and with none left the client gets
/// SERVFAIL "overloaded" (EDE 0), which, being our own limit and not the
/// upstream's failure, is never remembered by the failure cache. Shown by
/// tests/upstream_transports.rs `tcp_connection_carries_256_queries_at_once_…`.
const MAX_PIPELINED: usize = 256;
/// The error kind of an attempt refused by a full connection; the lookup turns
/// it into `LookupError::Overloaded`.
pub const FULL: io::ErrorKind = io::ErrorKind::QuotaExceeded;
/// How long a closing connection may take to say goodbye (TLS close_notify).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// The first read buffer; it grows for larger replies.
const READ_BUFFER: usize = 4096;

/// How a stream upstream is reached.
pub enum Security {
    Plain,
    Tls {
        connector: TlsConnector,
        name: ServerName<'static>,
    },
}

impl Security {
    /// TLS checked against `auth_name` with `config`'s roots.
    pub fn tls(config: Arc<ClientConfig>, auth_name: &ServerName<'static>) -> Security {
        Security::Tls {
            connector: TlsConnector::from(config),
            name: auth_name.clone(),
        }
    }
}

pub struct StreamPool {
    addr: SocketAddr,
    security: Security,
    idle_timeout: Duration,
    frame_timeout: Duration,
    /// The connection in use; the lock is held while a new one is made.
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
    metrics: Arc<Metrics>,
}

impl StreamPool {
    /// `frame_timeout`: how long a reply may take from its first byte to its
    /// last (the query deadline: a reply slower than that helps nobody).
    pub fn new(
        addr: SocketAddr,
        security: Security,
        idle_timeout: Duration,
        frame_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> StreamPool {
        StreamPool {
            addr,
            security,
            idle_timeout,
            frame_timeout,
            current: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Asks `question` on the shared connection. Ends with an answer or an
    /// error; the caller's deadline bounds it.
    pub async fn exchange(&self, question: &Question) -> io::Result<Answer> {
        match self.exchange_once(question).await {
            Err(Failure::Closed) => match self.exchange_once(question).await {
                Err(Failure::Closed) => Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "upstream closed the connection before replying",
                )),
                other => other.map_err(Failure::into_io),
            },
            other => other.map_err(Failure::into_io),
        }
    }

    async fn exchange_once(&self, question: &Question) -> Result<Answer, Failure> {
        let connection = self.connection().await.map_err(Failure::Io)?;
        let (id, reply) = connection.register()?;
        // Removes the ID whatever happens next, deadline included.
        let _registered = Registered {
            connection: &connection,
            id,
        };
        let mut query = question.encode();
        wire::write_u16(&mut query, 0, id);
        let len = u16::try_from(query.len()).map_err(|_| {
            Failure::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "query too long",
            ))
        })?;
        let mut frame = Vec::with_capacity(query.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&query);
        connection
            .frames
            .try_send(frame)
            .map_err(|_| Failure::Closed)?;
        self.metrics.upstream_queries.inc();
        let bytes = reply.await.map_err(|_| Failure::Closed)?;
        match question.accept(&bytes, id, Instant::now()) {
            Some(answer) => Ok(answer),
            None => {
                // The ID was ours but the reply is not for this question:
                // nothing else will come for this ID on this connection.
                self.metrics.upstream_ignored_replies.inc();
                Err(Failure::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "upstream reply does not match the question",
                )))
            }
        }
    }

    /// The open connection, or a new one.
    async fn connection(&self) -> io::Result<Arc<Connection>> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref().filter(|c| !c.closed.is_cancelled()) {
            return Ok(Arc::clone(connection));
        }
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let connection = match &self.security {
            Security::Plain => Connection::start(tcp, self.timeouts(), &self.metrics),
            Security::Tls { connector, name } => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .inspect_err(|error| {
                        tracing::warn!(upstream = %self.addr, %error, "TLS handshake failed");
                    })?;
                Connection::start(tls, self.timeouts(), &self.metrics)
            }
        };
        self.metrics.upstream_connections.inc();
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }
}

impl StreamPool {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            frame: self.frame_timeout,
        }
    }
}

/// When a connection's reader gives up on it.
#[derive(Clone, Copy)]
struct Timeouts {
    /// No query waiting for this long.
    idle: Duration,
    /// A reply frame begun and not whole for this long.
    frame: Duration,
}

enum Failure {
    /// The connection ended (or was ending) before a reply: worth one retry.
    Closed,
    /// `MAX_PIPELINED` queries already wait on the connection.
    Full,
    Io(io::Error),
}

impl Failure {
    fn into_io(self) -> io::Error {
        match self {
            Failure::Closed => {
                io::Error::new(io::ErrorKind::ConnectionReset, "upstream connection closed")
            }
            Failure::Full => io::Error::new(FULL, "upstream connection full"),
            Failure::Io(error) => error,
        }
    }
}

struct Connection {
    frames: mpsc::Sender<Vec<u8>>,
    /// Queries waiting for their reply, by ID. Emptied, under this lock, when
    /// the connection closes, so no query registers on a dead connection.
    waiting: Mutex<HashMap<u16, oneshot::Sender<Vec<u8>>>>,
    closed: CancellationToken,
}

impl Connection {
    fn start<S>(stream: S, timeouts: Timeouts, metrics: &Arc<Metrics>) -> Arc<Connection>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let (frames, queue) = mpsc::channel(MAX_PIPELINED);
        let connection = Arc::new(Connection {
            frames,
            waiting: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        tokio::spawn(write_frames(writer, queue, connection.closed.clone()));
        tokio::spawn(read_replies(
            reader,
            Arc::clone(&connection),
            timeouts,
            Arc::clone(metrics),
        ));
        connection
    }

    /// A fresh ID and the receiver its reply will arrive on, unless the
    /// connection has closed or is full.
    fn register(&self) -> Result<(u16, oneshot::Receiver<Vec<u8>>), Failure> {
        let mut waiting = self.lock();
        if self.closed.is_cancelled() {
            return Err(Failure::Closed);
        }
        if waiting.len() >= MAX_PIPELINED {
            return Err(Failure::Full);
        }
        let id = loop {
            let id: u16 = rand::random();
            if !waiting.contains_key(&id) {
                break id;
            }
        };
        let (sender, receiver) = oneshot::channel();
        waiting.insert(id, sender);
        Ok((id, receiver))
    }

    fn deliver(&self, frame: &[u8], metrics: &Metrics) {
        let waiter = frame
            .get(..2)
            .and_then(|id| self.lock().remove(&u16::from_be_bytes([id[0], id[1]])));
        match waiter {
            Some(waiter) => {
                // The waiter may have just given up; then the reply is dropped.
                let _ = waiter.send(frame.to_vec());
            }
            None => metrics.upstream_ignored_replies.inc(),
        }
    }

    fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    fn close(&self) {
        let mut waiting = self.lock();
        self.closed.cancel();
        // Dropping the senders wakes every waiter with "closed".
        waiting.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, oneshot::Sender<Vec<u8>>>> {
        // A map of channels: a poisoned lock still holds a usable value.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes a query's ID back when it stops waiting, answered or not.
struct Registered<'a> {
    connection: &'a Connection,
    id: u16,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.connection.lock().remove(&self.id);
    }
}

async fn write_frames<W: AsyncWrite>(
    writer: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
) {
    let mut writer = std::pin::pin!(writer);
    loop {
        let frame = tokio::select! {
            () = closed.cancelled() => break,
            frame = queue.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        let written = tokio::select! {
            () = closed.cancelled() => break,
            written = async {
                writer.write_all(&frame).await?;
                // TLS holds written data in its session until flushed; flush
                // once a burst of queued frames has been written.
                if queue.is_empty() {
                    writer.flush().await?;
                }
                io::Result::Ok(())
            } => written,
        };
        if written.is_err() {
            break;
        }
    }
    closed.cancel();
    let _ = timeout(SHUTDOWN_WAIT, writer.shutdown()).await;
}

async fn read_replies<R: AsyncRead>(
    reader: R,
    connection: Arc<Connection>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
) {
    let mut reader = std::pin::pin!(reader);
    let mut buffer = BytesMut::with_capacity(READ_BUFFER);
    // When the first byte of the frame now in the buffer arrived.
    let mut frame_started: Option<Instant> = None;
    'connection: loop {
        let mut delivered = false;
        while buffer.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buffer[0], buffer[1]]));
            if buffer.len() < 2 + len {
                buffer.reserve(2 + len - buffer.len());
                break;
            }
            buffer.advance(2);
            let frame = buffer.split_to(len);
            connection.deliver(&frame, &metrics);
            delivered = true;
        }
        frame_started = match frame_started {
            _ if buffer.is_empty() => None,
            Some(started) if !delivered => Some(started),
            _ => Some(Instant::now()),
        };
        let stalled_at = frame_started.map(|started| started + timeouts.frame);
        let idle = connection.is_idle();
        tokio::select! {
            () = connection.closed.cancelled() => break 'connection,
            // read_buf is cancel-safe: a frame cut short by the idle check
            // stays in the buffer.
            read = reader.read_buf(&mut buffer) => match read {
                Ok(0) | Err(_) => break 'connection,
                Ok(_) => {}
            },
            () = sleep(timeouts.idle), if idle => {
                if connection.is_idle() {
                    break 'connection;
                }
            }
            () = sleep_until(stalled_at.unwrap_or_else(Instant::now)), if stalled_at.is_some() => {
                metrics.upstream_stalled_connections.inc();
                break 'connection;
            }
        }
    }
    connection.close();
}
