//! Following a resolv.conf-format file for upstreams (a DHCP client's file,
//! systemd-resolved's `/run/systemd/resolve/resolv.conf`): re-read within
//! [`POLL`] of a change. Our own listen addresses are skipped (the same rules as
//! at start, `Config::upstreams`). A file that cannot be read or names no usable
//! server keeps the servers in use, with a warning saying why. Servers that stay
//! keep their measured RTT and health.
//!
//! Polling, not inotify: a resolv.conf is usually replaced by rename, which
//! inotify on the file misses, and one small read a second costs nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Routes;
use crate::config::Config;

/// How often the file is looked at: changes are in use within this (the
/// issue's bound is 2 s).
pub const POLL: Duration = Duration::from_secs(1);

/// Watches the resolv.conf of the config in use until `shutdown`, switching
/// the `[upstream]` pool to the servers it names when it changes. `current`
/// gives the config and routes in use at each poll (a reload may change
/// both); with `[upstream] servers` set there is nothing to follow.
pub async fn watch_resolv_conf(
    current: impl Fn() -> (Arc<Config>, Arc<Routes>),
    shutdown: CancellationToken,
) {
    let mut last: Option<(PathBuf, Option<Vec<u8>>)> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let (config, routes) = current();
        if !config.upstream.servers.is_empty() {
            last = None;
            continue;
        }
        let path = config.upstream.resolv_conf.clone();
        let seen = (path.clone(), std::fs::read(&path).ok());
        match &last {
            // The first look after start or a reload: what is in use came from it.
            None => {
                last = Some(seen);
                continue;
            }
            Some(previous) if *previous == seen => continue,
            Some(_) => last = Some(seen),
        }
        match config.upstreams() {
            Ok(servers) => {
                if routes.default_pool().replace_servers(&servers) {
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
