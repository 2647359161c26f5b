//! The listening side: binds UDP and TCP on every configured address (same port
//! for both, also when the port is 0), or takes the sockets systemd passed
//! (socket activation), and runs their serving loops.

mod batch;
mod frame;
mod socket;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::net::UdpSocket;
use thiserror::Error;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use tcp::{MAX_PIPELINED_PER_CONNECTION, TcpLimits};

use crate::guard::Guard;
use crate::handler::Resolver;
use crate::query_log::QueryLog;
use crate::systemd::activation::Inherited;

/// Tries to find a port free for both UDP and TCP when asked for port 0.
const PORT_ZERO_TRIES: usize = 16;

#[derive(Debug, Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

pub struct Listeners {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address; must be called inside a tokio runtime.
    pub fn bind(addresses: &[SocketAddr], recv_buffer: usize) -> Result<Listeners, BindError> {
        let mut listeners = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for &addr in addresses {
            let (udp, tcp) = bind_pair(addr, recv_buffer)?;
            listeners.udp.push(Arc::new(udp));
            listeners.tcp.push(tcp);
        }
        Ok(listeners)
    }

    /// Serves on the sockets systemd passed instead of binding any: the socket
    /// unit decides the addresses and options (sd_listen_fds(3)).
    pub fn inherit(inherited: Inherited) -> io::Result<Listeners> {
        let udp = inherited
            .udp
            .into_iter()
            .map(|socket| serving(socket).map(Arc::new))
            .collect::<io::Result<_>>()?;
        let tcp = inherited
            .tcp
            .into_iter()
            .map(TcpListener::from_std)
            .collect::<io::Result<_>>()?;
        Ok(Listeners { udp, tcp })
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Spawns every serving loop on `tasks` (UDP on threads of its own, which
    /// `tasks` waits for too); they stop accepting on `shutdown`. Every message
    /// passes `guard` before `resolver` sees it; with a `query_log`, every query
    /// is logged. Fails only when a thread cannot be started.
    pub fn spawn(
        self,
        resolver: &Arc<Resolver>,
        guard: &Arc<Guard>,
        query_log: Option<&QueryLog>,
        limits: TcpLimits,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
        // One cap for the connections of all listeners together.
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let limits = Arc::new(limits);
        for socket in self.udp {
            let (resolver, guard) = (Arc::clone(resolver), Arc::clone(guard));
            let (query_log, tracker, shutdown) =
                (query_log.cloned(), tasks.clone(), shutdown.clone());
            // A thread of our own rather than the runtime's blocking pool: a
            // blocking task that never ends would stop a paused test clock from
            // advancing. The token keeps `tasks` waiting for it at shutdown, and
            // the entered runtime lets it spawn tasks and read the runtime's clock.
            let token = tasks.token();
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("punctual-udp".to_owned())
                .spawn(move || {
                    let _runtime = runtime.enter();
                    udp::serve(socket, resolver, guard, query_log, tracker, shutdown);
                    drop(token);
                })?;
        }
        for listener in self.tcp {
            let serving = tcp::Serving {
                resolver: Arc::clone(resolver),
                guard: Arc::clone(guard),
                query_log: query_log.cloned(),
                limits: Arc::clone(&limits),
            };
            tasks.spawn(tcp::serve(
                listener,
                serving,
                Arc::clone(&permits),
                tasks.clone(),
                shutdown.clone(),
            ));
        }
        Ok(())
    }
}

/// A UDP socket as its serving thread uses it: blocking, with receive and send
/// timeouts so the thread sees shutdown (udp.rs).
fn serving(socket: UdpSocket) -> io::Result<UdpSocket> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(udp::SHUTDOWN_POLL))?;
    socket.set_write_timeout(Some(udp::SHUTDOWN_POLL))?;
    Ok(socket)
}

fn bind_pair(addr: SocketAddr, recv_buffer: usize) -> Result<(UdpSocket, TcpListener), BindError> {
    let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let error = |source| BindError { addr, source };
        let (udp, granted) = socket::udp(addr, recv_buffer).map_err(error)?;
        let bound = udp.local_addr().map_err(error)?;
        // TCP on the port UDP got, so clients that retry a truncated answer over
        // TCP (glibc, musl) find us on the same port.
        match socket::tcp(bound) {
            Ok(tcp) => {
                let udp = serving(udp).map_err(error)?;
                let tcp = TcpListener::from_std(tcp).map_err(error)?;
                tracing::info!("listening on udp://{bound}");
                tracing::info!("listening on tcp://{bound}");
                if granted < recv_buffer {
                    tracing::warn!(
                        requested = recv_buffer,
                        granted,
                        "UDP receive buffer smaller than configured; raise net.core.rmem_max"
                    );
                } else {
                    tracing::info!(requested = recv_buffer, granted, "UDP receive buffer");
                }
                return Ok((udp, tcp));
            }
            Err(source) if addr.port() == 0 && source.kind() == io::ErrorKind::AddrInUse => {
                last = Some(source);
            }
            Err(source) => return Err(BindError { addr, source }),
        }
    }
    Err(BindError {
        addr,
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}
