//! Working with systemd as the service manager, without libsystemd: readiness,
//! reload, stop and status notifications ([`notify`], sd_notify(3)), the
//! watchdog ([`watchdog`]) and socket activation ([`activation`],
//! sd_listen_fds(3)). Each does nothing when its environment variables are not
//! set, so punctual runs the same by hand, in a container or under systemd.

pub mod activation;
pub mod notify;
pub mod watchdog;

pub use notify::{ready, reloading, stopping};
