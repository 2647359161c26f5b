//! Serving DNS over TCP (RFC 7766): 2-byte length framing, several queries per
//! connection processed concurrently and answered as each completes, an idle
//! timeout, a read timeout and a size limit per message (see `frame`), and caps on
//! open connections, overall and per client (a connection beyond either is
//! closed at once; the open ones keep working).
//!
//! Each response's time from arrival to hand-off (the write) is observed in
//! `answer_duration` and, with the query log on, logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::{FrameError, FrameReader};
use crate::guard::{Admission, Guard};
use crate::handler::{Handled, Resolver, Source, Transport};
use crate::query_log::{Answered, Asked, QueryLog};

/// Queries one connection may have outstanding; beyond it we stop reading that
/// connection until one completes (TCP flow control pushes back on the client).
pub const MAX_PIPELINED_PER_CONNECTION: usize = 64;

pub struct TcpLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// A message must be whole within this of its first byte.
    pub read_timeout: Duration,
    /// A longer length prefix closes the connection.
    pub max_message: usize,
}

/// What every connection of the TCP listeners is served with.
#[derive(Clone)]
pub struct Serving {
    pub resolver: Arc<Resolver>,
    pub guard: Arc<Guard>,
    pub query_log: Option<QueryLog>,
    pub limits: Arc<TcpLimits>,
}

impl Serving {
    /// Observes the hand-off of a response (`sent`) or a drop, and logs it.
    fn done(&self, arrival: Instant, answered: Option<Answered>, sent: bool) {
        let latency = arrival.elapsed();
        if sent {
            self.resolver.metrics().answer_duration.observe(latency);
        }
        if let (Some(log), Some(answered)) = (&self.query_log, answered) {
            log.submit(answered, latency);
        }
    }
}

/// Serves one listener. `permits` caps the connections of every listener together.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let Serving {
        resolver, guard, ..
    } = &serving;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            resolver.metrics().tcp_connections_refused.inc();
            tracing::debug!(%peer, "TCP connection limit reached; closing");
            drop(stream);
            continue;
        };
        let Some(slot) = guard.tcp_connection(peer.ip()) else {
            tracing::debug!(%peer, "TCP connection limit per client reached; closing");
            drop(stream);
            continue;
        };
        resolver.metrics().tcp_connections_accepted.inc();
        let serving = serving.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            connection(stream, peer, serving, shutdown).await;
            drop((slot, permit));
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    shutdown: CancellationToken,
) {
    let Serving {
        resolver,
        guard,
        limits,
        ..
    } = &serving;
    let client = peer.ip();
    let (reader, mut writer) = stream.into_split();
    let mut frames = FrameReader::new(reader, limits.max_message, limits.read_timeout);
    let mut pending = FuturesUnordered::new();
    let mut idle_since = Instant::now();
    let mut reading = true;
    loop {
        if !reading && pending.is_empty() {
            break;
        }
        let (reply, arrival, answered) = tokio::select! {
            frame = frames.next(), if reading && pending.len() < MAX_PIPELINED_PER_CONNECTION => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    // End of input only means the client has stopped sending (it
                    // may have half-closed): answer what is outstanding, then close.
                    Ok(None) => {
                        reading = false;
                        continue;
                    }
                    Err(error) => {
                        count_frame_error(resolver, &error);
                        tracing::debug!(%client, %error, "closing TCP connection");
                        break;
                    }
                };
                let arrival = Instant::now();
                idle_since = arrival;
                let asked = || {
                    serving
                        .query_log
                        .as_ref()
                        .map(|_| Asked::new(&frame, peer, Transport::Tcp))
                };
                let (reply, source) = match guard.admit(&frame, client, arrival) {
                    Admission::Serve => match resolver.handle(&frame, Transport::Tcp, arrival) {
                        Handled::Reply(reply, source) => (reply, source),
                        Handled::Wait(query) => {
                            let asked = asked();
                            pending.push(query.response().map(move |(reply, source)| {
                                let answered =
                                    asked.map(|asked| asked.answered(Some(&reply), source));
                                (reply, arrival, answered)
                            }));
                            continue;
                        }
                        Handled::Drop => {
                            let answered = asked().map(|asked| asked.answered(None, Source::Dropped));
                            serving.done(arrival, answered, false);
                            continue;
                        }
                    },
                    Admission::Reply(reply) => (reply, Source::Refused),
                    Admission::Drop => {
                        let answered = asked().map(|asked| asked.answered(None, Source::Dropped));
                        serving.done(arrival, answered, false);
                        continue;
                    }
                };
                let answered = asked().map(|asked| asked.answered(Some(&reply), source));
                (reply, arrival, answered)
            }
            Some(done) = pending.next(), if !pending.is_empty() => done,
            // RFC 7766 §6.2.3: close a connection idle for the timeout (no query
            // outstanding and nothing received).
            () = sleep_until(idle_since + limits.idle_timeout), if pending.is_empty() => {
                resolver.metrics().tcp_idle_closed.inc();
                break;
            }
            () = shutdown.cancelled(), if reading => {
                // Stop reading; answer what is outstanding, then close.
                reading = false;
                continue;
            }
        };
        let written = write_framed(&mut writer, &reply, limits.idle_timeout).await;
        serving.done(arrival, answered, written);
        if !written {
            break;
        }
        idle_since = Instant::now();
    }
    let _ = writer.shutdown().await;
}

/// A connection closed for breaking a limit is counted; a broken one is not.
fn count_frame_error(resolver: &Resolver, error: &FrameError) {
    match error {
        FrameError::TooLarge(_) => resolver.metrics().tcp_oversized.inc(),
        FrameError::ReadTimeout => resolver.metrics().tcp_read_timeouts.inc(),
        FrameError::Io(_) => {}
    }
}

/// Writes one length-prefixed message in a single write; a client that does not
/// read for the idle timeout loses its connection instead of holding ours.
async fn write_framed(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    reply: &[u8],
    limit: Duration,
) -> bool {
    let Ok(len) = u16::try_from(reply.len()) else {
        return true;
    };
    let mut framed = Vec::with_capacity(reply.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(reply);
    matches!(timeout(limit, writer.write_all(&framed)).await, Ok(Ok(())))
}
