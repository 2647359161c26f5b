//! One UDP attempt: a fresh connected socket on an OS-chosen port, one query
//! with a fresh random ID, then wait for a matching reply.
//!
//! Connecting the socket makes the kernel discard datagrams from any other
//! source address or port, and report ICMP port-unreachable as an error, so a
//! closed upstream port fails fast instead of at the deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
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
        // Received into spare capacity: no zeroing of 4 KiB per attempt.
        let mut buffer = Vec::with_capacity(REPLY_BUFFER);
        loop {
            buffer.clear();
            self.socket.recv_buf(&mut buffer).await?;
            let received = Instant::now();
            match question.accept(&buffer, self.id, received) {
                Some(answer) => return Ok(answer),
                None => metrics.upstream_ignored_replies.inc(),
            }
        }
    }
}
