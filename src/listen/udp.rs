//! Serving one UDP socket: a thread of its own waits in recvmmsg(2) for a batch,
//! passes each datagram through the guard (size, allow list, rate), answers cache
//! hits and rejections at once (sent back as a batch), and hands misses to a task
//! on the runtime that answers by the query's deadline.
//!
//! Why a thread that blocks rather than a task woken by epoll: at a steady, not
//! saturating rate (the usual life of a host-local cache) every query came in
//! alone, and each one cost epoll_wait, recvmmsg, sendmmsg, a recvmmsg that
//! found nothing, and one more epoll_wait for the send's write-space event; a
//! blocked recvmmsg is woken by the datagram itself, so a lone query costs one
//! recvmmsg and one sendmmsg. The socket's receive timeout bounds how long the
//! thread takes to notice shutdown.
//!
//! Waiting tasks are bounded by the in-flight limits (`max_inflight` lookups ×
//! `max_waiters`): a query beyond them is answered "overloaded" at once.
//!
//! Each response's time from arrival to hand-off is observed in
//! `answer_duration` (one reading per batch serves all its inline responses),
//! and, with the query log on, each query is logged at that time.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, SockaddrStorage, sendto};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::{self, BATCH, RecvBatch};
use crate::guard::{Admission, Guard};
use crate::handler::{Handled, Resolver, Source, Transport};
use crate::query_log::{Answered, Asked, QueryLog};

/// The receive timeout of a serving socket: the longest the thread takes to see
/// shutdown while no query comes.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// A reply that finds the socket's send buffer full is tried again every
/// [`SEND_RETRY`] for up to [`SEND_PATIENCE`], then dropped (and logged).
const SEND_RETRY: Duration = Duration::from_millis(1);
const SEND_PATIENCE: Duration = Duration::from_millis(50);

/// Runs on a thread of its own, inside the runtime's context (so it can spawn
/// tasks and read the runtime's clock), until `shutdown`. `socket` is in
/// blocking mode with [`SHUTDOWN_POLL`] as its receive and send timeouts.
pub fn serve(
    socket: Arc<UdpSocket>,
    resolver: Arc<Resolver>,
    guard: Arc<Guard>,
    query_log: Option<QueryLog>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut batch = RecvBatch::new();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    // With the query log on: the batch's queries, logged once their replies went.
    let mut logged: Vec<Answered> = Vec::new();
    while !shutdown.is_cancelled() {
        match batch.wait_and_receive(socket.as_ref()) {
            // Longer than a receive slot, so longer than any `max_udp_query`.
            Ok(_) => resolver.metrics().udp_oversized.add(batch.truncated()),
            // The receive timeout: look at `shutdown` again.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                log_receive_error(&error);
                continue;
            }
        }
        let arrival = Instant::now();
        for (bytes, peer) in batch.datagrams() {
            // Longer than `max_udp_query`: counted by the guard and dropped.
            let Some(admission) = guard.admit_udp(bytes, peer.ip(), arrival) else {
                continue;
            };
            let asked = || Asked::new(bytes, peer, Transport::Udp);
            let (reply, source) = match admission {
                Admission::Serve => match resolver.handle(bytes, Transport::Udp, arrival) {
                    Handled::Reply(reply, source) => (Some(reply), source),
                    Handled::Wait(pending) => {
                        let socket = Arc::clone(&socket);
                        let resolver = Arc::clone(&resolver);
                        let query_log = query_log.as_ref().map(|log| (log.clone(), asked()));
                        tasks.spawn(async move {
                            let (reply, source) = pending.response().await;
                            send_from_task(&socket, &reply, peer).await;
                            let latency = arrival.elapsed();
                            resolver.metrics().answer_duration.observe(latency);
                            if let Some((log, asked)) = query_log {
                                log.submit(asked.answered(Some(&reply), source), latency);
                            }
                        });
                        continue;
                    }
                    Handled::Drop => (None, Source::Dropped),
                },
                Admission::Reply(reply) => (Some(reply), Source::Refused),
                Admission::Drop => (None, Source::Dropped),
            };
            if query_log.is_some() {
                logged.push(asked().answered(reply.as_deref(), source));
            }
            if let Some(reply) = reply {
                replies.push((reply, peer));
            }
        }
        let sent = replies.len();
        send_all(&socket, &mut replies);
        let latency = arrival.elapsed();
        for _ in 0..sent {
            resolver.metrics().answer_duration.observe(latency);
        }
        if let Some(log) = &query_log {
            for answered in logged.drain(..) {
                log.submit(answered, latency);
            }
        }
    }
}

/// Sends the replies of one batch: together if the socket takes them, the rest
/// one by one. A send that finds the buffer still full after the socket's send
/// timeout drops the batch's remaining replies, so the thread stalls at most
/// one timeout per batch; the clients retry.
fn send_all(socket: &UdpSocket, replies: &mut Vec<(Vec<u8>, SocketAddr)>) {
    let sent = batch::send(socket, replies).unwrap_or(0);
    for (reply, peer) in replies.drain(..).skip(sent) {
        match socket.send_to(&reply, peer) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!(%peer, %error, "UDP send buffer full: batch's replies dropped");
                break;
            }
            Err(error) => tracing::debug!(%peer, %error, "could not send a UDP response"),
        }
    }
}

/// Sends one reply from a task without blocking its worker: the socket is in
/// blocking mode for the serving thread, so every send here says MSG_DONTWAIT.
async fn send_from_task(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    let to = SockaddrStorage::from(peer);
    let give_up = Instant::now() + SEND_PATIENCE;
    loop {
        match sendto(socket.as_raw_fd(), reply, &to, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => return,
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < give_up => {
                tokio::time::sleep(SEND_RETRY).await;
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "could not send a UDP response");
                return;
            }
        }
    }
}

fn log_receive_error(error: &io::Error) {
    // Linux reports an earlier ICMP error for a response we sent on the next
    // receive (ECONNREFUSED): that is the client's port, not our socket.
    tracing::debug!(%error, "UDP receive error");
}
