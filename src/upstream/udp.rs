//! One UDP attempt: a fresh connected socket on an OS-chosen port, one query
//! with a fresh random ID, then wait for a matching reply.
//!
//! Connecting the socket makes the kernel discard datagrams from any other
//! source address or port, and report ICMP port-unreachable as an error, so a
//! closed upstream port fails fast instead of at the deadline.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::message::Question;
use crate::answer::Answer;
use crate::metrics::Metrics;
use crate::wire;

/// Replies over 1232 bytes are not expected (we advertise 1232); 4096 leaves room
/// for servers that ignore it, and anything longer is cut and fails the parse.
const REPLY_BUFFER: usize = 4096;

pub struct Attempt {
    socket: UdpSocket,
    id: u16,
}

impl Attempt {
    /// Sends `query` (ID patched) to `server` from a new socket.
    pub async fn send(server: SocketAddr, query: &mut [u8]) -> io::Result<Attempt> {
        // Non-blocking and close-on-exec from the start, and no explicit bind:
        // connect() picks the source address and a random ephemeral port
        // (RFC 5452 §9.2), saving two system calls per attempt.
        let socket = Socket::new(
            Domain::for_address(server),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        socket.connect(&server.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let id: u16 = rand::random();
        wire::write_u16(query, 0, id);
        socket.send(query).await?;
        Ok(Attempt { socket, id })
    }

    /// Waits for a reply that `question` accepts; mismatches are counted and
    /// ignored. Ends only with an answer or an I/O error: the caller's deadline
    /// bounds it.
    pub async fn receive(
        self,
        question: Arc<Question>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Answer> {
        loop {
            // The datagram is read on the stack once the socket is readable and
            // kept at its own length: a waiting attempt (thousands of them when
            // an upstream hangs) holds no receive buffer. ERROR readiness too, as
            // tokio's own `recv` waits: a queued ICMP port-unreachable
            // (EPOLLERR) then ends the wait with its error at once.
            let reply = self
                .socket
                .async_io(Interest::READABLE | Interest::ERROR, || {
                    let mut buffer = [0u8; REPLY_BUFFER];
                    // recv(2) itself: tokio's `try_recv` would first check for
                    // READABLE alone and report an ERROR wake-up as WouldBlock.
                    let len = (&*SockRef::from(&self.socket)).read(&mut buffer)?;
                    Ok(buffer[..len].to_vec())
                })
                .await?;
            match question.accept(&reply, self.id, Instant::now()) {
                Some(answer) => return Ok(answer),
                None => metrics.upstream_ignored_replies.inc(),
            }
        }
    }
}
