//! Batched UDP receive and send: one recvmmsg(2) takes up to [`BATCH`]
//! datagrams and one sendmmsg(2) sends the replies that were ready at once.
//!
//! On this project's machines a system call costs more than answering a query
//! from cache (measured: 3 of every 4 CPU microseconds of a cached answer were
//! spent in the kernel with one recvfrom and one sendto per query), so under load
//! batching is the largest single saving. nix wraps the calls, so this crate
//! keeps `forbid(unsafe_code)`. When only one datagram is waiting a batch is one
//! datagram: nothing is delayed to fill a batch.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use crate::config::MAX_UDP_QUERY_LIMIT;

/// Datagrams per system call. 32 fills a batch at a few hundred thousand
/// queries per second without making the buffers large.
pub const BATCH: usize = 32;

/// Room for one client query: the largest `[limits] max_udp_query` allowed.
/// Queries are a few dozen bytes; EDNS options included they stay far below
/// this. A longer datagram arrives cut short (MSG_TRUNC) and is dropped.
const SLOT: usize = MAX_UDP_QUERY_LIMIT;

/// The smallest batch asked for. Each call sets up one header per datagram
/// it may receive (about 200 bytes each), so a quiet socket, where a call finds
/// one query, asks for few; a busy one doubles up to [`BATCH`].
const MIN_BATCH: usize = 4;

/// Buffers for one batch of received datagrams, reused for every batch.
pub struct RecvBatch {
    buffers: Vec<u8>,
    /// For each usable datagram of the last batch: its slot, length and sender.
    received: Vec<(usize, usize, SocketAddr)>,
    /// How many datagrams the next call asks for.
    size: usize,
    /// Datagrams of the last batch dropped for not fitting a slot.
    truncated: usize,
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch {
            buffers: vec![0; BATCH * SLOT],
            received: Vec::with_capacity(BATCH),
            size: MIN_BATCH,
            truncated: 0,
        }
    }

    /// Waits for at least one datagram on a blocking socket (up to its receive
    /// timeout, then `WouldBlock`), then takes what else is waiting, up to
    /// [`BATCH`] (MSG_WAITFORONE: the batch never waits to fill). Returns how
    /// many datagrams can be used.
    pub fn wait_and_receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received.clear();
        self.truncated = 0;
        let size = self.size;
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(size, None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .chunks_mut(SLOT)
            .take(size)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        let mut count = 0;
        for (slot, message) in results.enumerate() {
            count += 1;
            let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
            self.truncated += usize::from(truncated);
            if let Some(peer) = message.address.as_ref().and_then(socket_addr)
                && !truncated
            {
                self.received.push((slot, message.bytes.min(SLOT), peer));
            }
        }
        self.size = if count == size {
            (size * 2).min(BATCH)
        } else if count * 4 <= size {
            (size / 2).max(MIN_BATCH)
        } else {
            size
        };
        Ok(self.received.len())
    }

    /// How many datagrams of the last batch were longer than a slot and dropped.
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// The datagrams of the last batch, with their senders.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.received.iter().filter_map(|&(slot, len, peer)| {
            let start = slot * SLOT;
            self.buffers
                .get(start..start + len)
                .map(|bytes| (bytes, peer))
        })
    }
}

/// Sends `replies` with one sendmmsg without blocking; returns how many went.
/// The caller sends the rest one by one (a full socket buffer, or an error on
/// one destination, stops the batch there).
pub fn send(socket: &impl AsRawFd, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    if replies.is_empty() {
        return Ok(0);
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = replies
        .iter()
        .map(|(bytes, _)| [IoSlice::new(bytes)])
        .collect();
    let addresses: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|&(_, peer)| Some(SockaddrStorage::from(peer)))
        .collect();
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter(),
        addresses,
        [],
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(results.count())
}

fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;

    /// Blocking, as the serving thread's sockets are; a short receive timeout
    /// so that a test finds the queue empty quickly.
    fn bound() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        socket
    }

    #[test]
    fn receives_in_growing_batches_and_drops_datagrams_too_long_for_a_slot() {
        let server = bound();
        let client = bound();
        let to = server.local_addr().expect("addr");
        for i in 0..40u8 {
            client.send_to(&[i; 20], to).expect("send");
        }
        client.send_to(&vec![7; SLOT + 1], to).expect("send long");
        client.send_to(&[99; 3], to).expect("send last");
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut truncated = 0;
        loop {
            match batch.wait_and_receive(&server) {
                Ok(n) => {
                    sizes.push(n);
                    truncated += batch.truncated();
                    got.extend(batch.datagrams().map(|(b, p)| (b.to_vec(), p)));
                }
                Err(error) => {
                    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        // 4, 8, 16, then the 13 left (the long one dropped): batches grow.
        assert_eq!(sizes, vec![4, 8, 16, 13]);
        assert_eq!(got.len(), 41);
        assert_eq!(got[0], (vec![0; 20], client.local_addr().expect("addr")));
        assert_eq!(got[39].0, vec![39; 20]);
        assert_eq!(got[40].0, vec![99; 3]);
        assert_eq!(truncated, 1);
        // A quiet socket shrinks the batch back.
        client.send_to(&[1; 5], to).expect("send");
        assert_eq!(batch.wait_and_receive(&server).expect("one"), 1);
        assert!(batch.size < 32);
    }

    #[test]
    fn sends_to_several_peers_in_one_call() {
        let server = bound();
        let peers: Vec<UdpSocket> = (0..3).map(|_| bound()).collect();
        let replies: Vec<(Vec<u8>, SocketAddr)> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (vec![i as u8; 10 + i], p.local_addr().expect("addr")))
            .collect();
        assert_eq!(send(&server, &replies).expect("sendmmsg"), 3);
        for (i, peer) in peers.iter().enumerate() {
            let mut buf = [0u8; 64];
            let (len, from) = peer.recv_from(&mut buf).expect("reply");
            assert_eq!(&buf[..len], &vec![i as u8; 10 + i][..]);
            assert_eq!(from, server.local_addr().expect("addr"));
        }
        assert_eq!(send(&server, &[]).expect("nothing to send"), 0);
    }
}
