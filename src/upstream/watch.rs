//! Following a resolv.conf-format file for upstreams (a DHCP client's file,
//! systemd-resolved's `/run/systemd/resolve/resolv.conf`): re-read within
//! [`POLL`] of a change. Our own listen addresses are skipped (the same rules as
//! at start, `Config::upstreams`). A file that cannot be read or names no usable
//! server keeps the servers in use, with a warning saying why. Servers that stay
//! keep their measured RTT and health.
//!
//! Polling, not inotify: a resolv.conf is usually replaced by rename, which
//! inotify on the file misses, and one small read a second costs nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Upstream;
use crate::config::Config;

/// How often the file is looked at: changes are in use within this (the
/// issue's bound is 2 s).
pub const POLL: Duration = Duration::from_secs(1);

/// Watches `config.upstream.resolv_conf` until `shutdown`, switching
/// `upstream` to the servers it names when it changes.
pub async fn watch_resolv_conf(config: Config, upstream: &Upstream, shutdown: CancellationToken) {
    let path = config.upstream.resolv_conf.clone();
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let now = std::fs::read(&path).ok();
        if now == last {
            continue;
        }
        last = now;
        match config.upstreams() {
            Ok(servers) => {
                if upstream.replace_servers(&servers) {
                    let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
                    tracing::info!(file = %path.display(), ?servers, "upstream servers changed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the upstream servers in use");
            }
        }
    }
}
