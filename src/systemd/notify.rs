//! Telling the service manager how punctual is doing, per sd_notify(3): one
//! datagram of newline-separated `VARIABLE=value` lines to the unix socket named
//! by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). `READY=1`
//! once every listener serves, `RELOADING=1` with `MONOTONIC_USEC` and then
//! `READY=1` around a reload, `STOPPING=1` when shutdown starts, `STATUS=` lines
//! for `systemctl status`, and `WATCHDOG=1` pings (see [`super::watchdog`]).
//!
//! The socket is created and connected once, by [`connect`], which
//! [`crate::Server::bind`] calls before privileges are dropped: the permission
//! check on the notify socket's file happens at connect(2), so later sends work
//! as any user. Sends never block (a full receive queue loses that message, as
//! sd_notify(3) would report an error) and failures are logged, never fatal:
//! without a service manager listening punctual serves all the same. Nothing is
//! unset from the environment.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

use nix::time::{ClockId, clock_gettime};
use thiserror::Error;

/// The environment variable naming the service manager's socket (sd_notify(3)).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

#[derive(Debug, Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@name`.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor @name")]
    BadAddress(String),
    #[error("cannot connect to NOTIFY_SOCKET {socket:?}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: io::Error,
    },
}

/// A connected notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
}

impl Notifier {
    /// Connects to `address` as `NOTIFY_SOCKET` writes it: an absolute path, or
    /// `@name` for Linux's abstract namespace.
    pub fn connect(address: &str) -> Result<Notifier, NotifyError> {
        let socket_address = parse_address(address)?;
        let connect = || -> io::Result<UnixDatagram> {
            let socket = UnixDatagram::unbound()?;
            socket.connect_addr(&socket_address)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        };
        let socket = connect().map_err(|source| NotifyError::Connect {
            socket: address.to_owned(),
            source,
        })?;
        Ok(Notifier { socket })
    }

    /// Sends one notification: `lines` joined by newlines, as one datagram.
    pub fn send(&self, lines: &[&str]) -> io::Result<()> {
        self.socket.send(lines.join("\n").as_bytes()).map(drop)
    }
}

fn parse_address(address: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(address.to_owned());
    if let Some(name) = address.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())
    } else if address.starts_with('/') {
        SocketAddr::from_pathname(address).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// The process's notifier: `None` without `NOTIFY_SOCKET` (not run by a
/// service manager), or when it could not be connected (logged once).
static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();

/// Connects to `NOTIFY_SOCKET`, if it is set; later calls do nothing. Call it
/// before dropping privileges (see the module comment).
pub fn connect() {
    NOTIFIER.get_or_init(|| {
        let address = std::env::var(NOTIFY_SOCKET).ok()?;
        match Notifier::connect(&address) {
            Ok(notifier) => Some(notifier),
            Err(error) => {
                tracing::warn!(%error, "systemd notifications disabled");
                None
            }
        }
    });
}

/// Sends `lines` to the service manager, if there is one.
fn notify(lines: &[&str]) {
    let Some(notifier) = NOTIFIER.get().and_then(Option::as_ref) else {
        return;
    };
    match notifier.send(lines) {
        Ok(()) => tracing::debug!(message = ?lines, "sent to the service manager"),
        Err(error) => tracing::warn!(%error, message = ?lines, "cannot notify the service manager"),
    }
}

/// `READY=1`: every listener serves (after start, and after a reload), with a
/// `STATUS=` line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&["READY=1", &status_line(status)]);
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd requires for
/// `Type=notify-reload` (sd_notify(3)); send [`ready`] when the reload is done,
/// whether or not it succeeded.
pub fn reloading() {
    notify(&["RELOADING=1", &monotonic_usec_line(), "STATUS=reloading"]);
}

/// `STOPPING=1`: shutdown has started; queries in flight are being answered.
pub fn stopping() {
    notify(&[
        "STOPPING=1",
        "STATUS=stopping: answering the queries in flight",
    ]);
}

/// `WATCHDOG=1`: the service is alive (see [`super::watchdog`]).
pub fn watchdog() {
    notify(&["WATCHDOG=1"]);
}

/// A `STATUS=` line: one line of free text, so newlines become spaces.
pub fn status_line(status: &str) -> String {
    format!("STATUS={}", status.replace('\n', " "))
}

/// `MONOTONIC_USEC=` with CLOCK_MONOTONIC now, in microseconds (sd_notify(3)).
pub fn monotonic_usec_line() -> String {
    let usec = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|now| {
            let seconds = u64::try_from(now.tv_sec()).unwrap_or(0);
            let micros = u64::try_from(now.tv_nsec() / 1_000).unwrap_or(0);
            seconds.saturating_mul(1_000_000).saturating_add(micros)
        })
        .unwrap_or(0);
    format!("MONOTONIC_USEC={usec}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buffer = [0u8; 512];
        let len = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    }

    #[test]
    fn sends_one_datagram_of_lines_to_a_path() {
        let dir = std::env::temp_dir().join(format!("punctual-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::connect(path.to_str().expect("utf-8")).expect("connect");
        notifier
            .send(&["READY=1", &status_line("serving\non 2 sockets")])
            .expect("send");
        assert_eq!(receive(&manager), "READY=1\nSTATUS=serving on 2 sockets");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_at_sign_names_the_abstract_namespace() {
        let name = format!("punctual-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let manager = UnixDatagram::bind_addr(&address).expect("bind");
        let notifier = Notifier::connect(&format!("@{name}")).expect("connect");
        notifier.send(&["WATCHDOG=1"]).expect("send");
        assert_eq!(receive(&manager), "WATCHDOG=1");
    }

    #[test]
    fn a_relative_path_or_a_missing_socket_is_an_error() {
        assert!(matches!(
            Notifier::connect("run/notify"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(matches!(
            Notifier::connect("/nonexistent/punctual/notify.sock"),
            Err(NotifyError::Connect { .. })
        ));
    }

    #[test]
    fn monotonic_usec_is_microseconds_of_clock_monotonic() {
        let line = monotonic_usec_line();
        let usec: u64 = line
            .strip_prefix("MONOTONIC_USEC=")
            .and_then(|value| value.parse().ok())
            .expect("MONOTONIC_USEC=<number>");
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock");
        let now_usec = u64::try_from(now.tv_sec()).expect("positive") * 1_000_000;
        assert!(
            usec > 0 && usec <= now_usec + 1_000_000,
            "{usec} vs {now_usec}"
        );
    }
}
