//! Socket activation (sd_listen_fds(3)): when `LISTEN_PID` is this process's
//! pid and `LISTEN_FDS` is N, file descriptors 3 to 3+N-1 are listening sockets
//! the service manager bound for us (a `punctual.socket` unit with
//! `ListenDatagram=` and `ListenStream=`). Each is taken as a UDP socket or a
//! TCP listener, whichever it is, and then punctual serves on exactly those
//! sockets and binds none of `[listen] addresses`.
//!
//! Turning a raw descriptor into an owned socket is the one thing safe Rust
//! cannot do, so the `listenfd` crate does it: it checks each descriptor is a
//! socket of the asked type (SO_TYPE) and address family, marks it
//! close-on-exec and, like `sd_listen_fds(1)`, unsets `LISTEN_PID` and
//! `LISTEN_FDS`, so no second take in this process can claim the descriptors
//! again. Unsetting the environment is only sound while no other thread runs,
//! so [`take`] must be called before the async runtime starts (main does).
//! `listenfd` also accepts a missing `LISTEN_PID`; [`take`] does not, as
//! sd_listen_fds(3) requires.

use std::io;
use std::net::{TcpListener, UdpSocket};

use listenfd::ListenFd;
use socket2::SockRef;
use thiserror::Error;

/// sd_listen_fds(3): SD_LISTEN_FDS_START, the first passed descriptor.
const LISTEN_FDS_START: usize = 3;

#[derive(Debug, Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a number of descriptors")]
    BadCount(String),
    #[error("inherited fd {fd} ({name}) is neither a UDP socket nor a TCP listener")]
    NotDns { fd: usize, name: String },
    #[error("inherited fd {fd} ({name}) is a TCP socket that is not listening")]
    NotListening { fd: usize, name: String },
    #[error("inherited fd {fd} ({name}): {source}")]
    Io {
        fd: usize,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The sockets the service manager passed, in descriptor order.
#[derive(Debug, Default)]
pub struct Inherited {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Inherited {
    pub fn is_empty(&self) -> bool {
        self.udp.is_empty() && self.tcp.is_empty()
    }
}

/// How many descriptors are ours: `LISTEN_FDS`, if `LISTEN_PID` is `pid`.
/// Without either variable, or for another process, none.
pub fn passed_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> Result<usize, ActivationError> {
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else {
        return Ok(0);
    };
    if listen_pid.trim().parse::<u32>() != Ok(pid) {
        return Ok(0);
    }
    listen_fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(listen_fds.to_owned()))
}

/// The name of descriptor `index` from `LISTEN_FDNAMES` (colon-separated, one
/// per descriptor; `FileDescriptorName=` in the socket unit), or "unnamed".
pub fn fd_name(names: Option<&str>, index: usize) -> String {
    names
        .and_then(|names| names.split(':').nth(index))
        .filter(|name| !name.is_empty())
        .unwrap_or("unnamed")
        .to_owned()
}

/// Takes the sockets passed to this process, if any (see the module comment).
/// Call it once, before any other thread is started.
pub fn take() -> Result<Inherited, ActivationError> {
    let count = passed_count(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    )?;
    let mut inherited = Inherited::default();
    if count == 0 {
        return Ok(inherited);
    }
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let mut fds = ListenFd::from_env();
    for index in 0..count {
        let fd = LISTEN_FDS_START + index;
        let name = fd_name(names.as_deref(), index);
        let io_error = |source| ActivationError::Io {
            fd,
            name: name.clone(),
            source,
        };
        if let Ok(Some(udp)) = fds.take_udp_socket(index) {
            udp.set_nonblocking(true).map_err(io_error)?;
            tracing::info!(fd, %name, addr = ?udp.local_addr().ok(), "inherited UDP socket");
            inherited.udp.push(udp);
        } else if let Ok(Some(tcp)) = fds.take_tcp_listener(index) {
            if !SockRef::from(&tcp).is_listener().map_err(io_error)? {
                return Err(ActivationError::NotListening { fd, name });
            }
            tcp.set_nonblocking(true).map_err(io_error)?;
            tracing::info!(fd, %name, addr = ?tcp.local_addr().ok(), "inherited TCP listener");
            inherited.tcp.push(tcp);
        } else {
            return Err(ActivationError::NotDns { fd, name });
        }
    }
    Ok(inherited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_ours_only_when_listen_pid_names_us() {
        assert_eq!(passed_count(Some("42"), Some("2"), 42).expect("ok"), 2);
        assert_eq!(passed_count(Some("41"), Some("2"), 42).expect("ok"), 0);
        // sd_listen_fds(3) requires LISTEN_PID; listenfd's looser rule is not ours.
        assert_eq!(passed_count(None, Some("2"), 42).expect("ok"), 0);
        assert_eq!(passed_count(Some("42"), None, 42).expect("ok"), 0);
        assert!(matches!(
            passed_count(Some("42"), Some("two"), 42),
            Err(ActivationError::BadCount(_))
        ));
    }

    #[test]
    fn names_come_from_listen_fdnames_in_order() {
        assert_eq!(fd_name(Some("dns-udp:dns-tcp"), 1), "dns-tcp");
        assert_eq!(fd_name(Some("dns-udp"), 1), "unnamed");
        assert_eq!(fd_name(Some("::"), 0), "unnamed");
        assert_eq!(fd_name(None, 0), "unnamed");
    }
}
