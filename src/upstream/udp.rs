//! One UDP attempt: a fresh connected socket on an OS-chosen port, one query
//! with a fresh random ID, then wait for a matching reply.
//!
//! Connecting the socket makes the kernel discard datagrams from any other
//! source address or port, and report ICMP port-unreachable as an error, so a
//! closed upstream port fails fast instead of at the deadline.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

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
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
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
        let mut buffer = vec![0u8; REPLY_BUFFER];
        loop {
            let len = self.socket.recv(&mut buffer).await?;
            let received = Instant::now();
            match question.accept(&buffer[..len], self.id, received) {
                Some(answer) => return Ok(answer),
                None => metrics.upstream_ignored_replies.inc(),
            }
        }
    }
}
