//! Serving one UDP socket: receive a batch, pass each datagram through the
//! guard (size, allow list, rate), answer cache hits and rejections inline (sent
//! back as a batch), hand misses to a task that answers by the query's deadline.
//!
//! Waiting tasks are bounded by the in-flight limits (`max_inflight` lookups ×
//! `max_waiters`): a query beyond them is answered "overloaded" inline.
//!
//! Each response's time from arrival to hand-off is observed in
//! `answer_duration` (one reading per batch serves all its inline responses),
//! and, with the query log on, each query is logged at that time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::{self, BATCH, RecvBatch};
use crate::guard::{Admission, Guard};
use crate::handler::{Handled, Resolver, Source, Transport};
use crate::query_log::{Answered, Asked, QueryLog};

pub async fn serve(
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
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            ready = socket.readable() => {
                if let Err(error) = ready {
                    log_receive_error(&error);
                    continue;
                }
            }
        }
        match socket.try_io(Interest::READABLE, || batch.receive(socket.as_ref())) {
            // Longer than a receive slot, so longer than any `max_udp_query`.
            Ok(_) => resolver.metrics().udp_oversized.add(batch.truncated()),
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
                            send(&socket, &reply, peer).await;
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
        send_all(&socket, &mut replies).await;
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
/// one by one.
async fn send_all(socket: &UdpSocket, replies: &mut Vec<(Vec<u8>, SocketAddr)>) {
    let sent = socket
        .try_io(Interest::WRITABLE, || batch::send(socket, replies))
        .unwrap_or(0);
    for (reply, peer) in replies.drain(..).skip(sent) {
        send(socket, &reply, peer).await;
    }
}

async fn send(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(reply, peer).await {
        tracing::debug!(%peer, %error, "could not send a UDP response");
    }
}

fn log_receive_error(error: &io::Error) {
    // Linux reports an earlier ICMP error for a response we sent on the next
    // receive (ECONNREFUSED): that is the client's port, not our socket.
    tracing::debug!(%error, "UDP receive error");
}
