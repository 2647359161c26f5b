//! Serving one UDP socket: receive a batch, pass each datagram through the
//! guard (size, allow list, rate), answer cache hits and rejections inline (sent
//! back as a batch), hand misses to a task that answers by the query's deadline.
//!
//! Waiting tasks are bounded by the in-flight limits (`max_inflight` lookups ×
//! `max_waiters`): a query beyond them is answered "overloaded" inline.

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
use crate::handler::{Handled, Resolver, Transport};

pub async fn serve(
    socket: Arc<UdpSocket>,
    resolver: Arc<Resolver>,
    guard: Arc<Guard>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut batch = RecvBatch::new();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
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
            if !guard.udp_fits(bytes.len()) {
                continue;
            }
            match guard.admit(bytes, peer.ip(), arrival) {
                Admission::Serve => {}
                Admission::Reply(reply) => {
                    replies.push((reply, peer));
                    continue;
                }
                Admission::Drop => continue,
            }
            match resolver.handle(bytes, Transport::Udp, arrival) {
                Handled::Reply(reply) => replies.push((reply, peer)),
                Handled::Wait(pending) => {
                    let socket = Arc::clone(&socket);
                    tasks.spawn(async move {
                        let reply = pending.response().await;
                        send(&socket, &reply, peer).await;
                    });
                }
                Handled::Drop => {}
            }
        }
        send_all(&socket, &mut replies).await;
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
