//! Building the listening sockets with socket2, so the options the kernel must
//! see before `bind` are set: SO_REUSEADDR/SO_REUSEPORT (restart without
//! waiting out TIME_WAIT, and room for several receive sockets per address),
//! IPV6_V6ONLY (an IPv6 listener must not also claim the IPv4 port), and the
//! UDP receive buffer (a burst of answers released at once by coalescing
//! overflows the default ~208 KB buffer).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending TCP connections the kernel may queue before we accept them.
const TCP_BACKLOG: i32 = 1024;

fn new_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A bound UDP socket and the receive buffer size the kernel granted.
pub fn udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<(std::net::UdpSocket, usize)> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    // The kernel caps this at net.core.rmem_max and doubles what it grants for
    // bookkeeping; we report what it actually gave.
    socket.set_recv_buffer_size(recv_buffer)?;
    let granted = socket.recv_buffer_size()?;
    socket.bind(&addr.into())?;
    Ok((socket.into(), granted))
}

pub fn tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}
