//! Serving one UDP socket: receive, answer cache hits and rejections inline,
//! hand misses to a task that answers by the query's deadline.
//!
//! Waiting tasks are bounded by the in-flight limits (`max_inflight` lookups ×
//! `max_waiters`): a query beyond them is answered "overloaded" inline.

use std::io;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{Handled, Resolver, Transport};

/// The largest UDP message a client can send us (RFC 768 length field).
const MAX_DATAGRAM: usize = 65_535;

pub async fn serve(
    socket: Arc<UdpSocket>,
    resolver: Arc<Resolver>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    log_receive_error(&error);
                    continue;
                }
            },
        };
        match resolver.handle(&buffer[..len], Transport::Udp, Instant::now()) {
            Handled::Reply(reply) => send(&socket, &reply, peer).await,
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
}

async fn send(socket: &UdpSocket, reply: &[u8], peer: std::net::SocketAddr) {
    if let Err(error) = socket.send_to(reply, peer).await {
        tracing::debug!(%peer, %error, "could not send a UDP response");
    }
}

fn log_receive_error(error: &io::Error) {
    // Linux reports an earlier ICMP error for a response we sent on the next
    // receive (ECONNREFUSED): that is the client's port, not our socket.
    tracing::debug!(%error, "UDP receive error");
}
