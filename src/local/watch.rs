//! The hosts files in use and their re-reading: each file is looked at every
//! [`POLL`] (device, inode, size, modification and change times) and re-read when
//! that changes, so an edit is answered within two polls at most. A file that
//! disappears or cannot be read keeps the entries it had, with a warning saying
//! why; when it is back, it is read again.
//!
//! Polling, not inotify, as for resolv.conf: hosts files are often replaced by
//! rename, and a few `stat` calls a second cost nothing. Re-reading runs on a
//! blocking thread: an ad-blocking hosts file can have a hundred thousand lines.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::hosts::{self, HostEntry};
use super::{Hosts, RecordTable};

/// How often the files are looked at; changes are in use within this and one read.
pub const POLL: Duration = Duration::from_secs(1);

/// What identifies one version of a file without reading it. The change time
/// moves on chmod and chown too, so a file made readable again is re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        Ok(Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// One hosts file: its last stamp (`None`: missing or unreadable) and entries.
#[derive(Debug)]
struct HostsFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    entries: Vec<HostEntry>,
    /// Whether the last look failed, so a missing file is warned about once.
    failing: bool,
}

impl HostsFile {
    /// Reads the file if its stamp changed; true if its entries may have.
    fn refresh(&mut self) -> bool {
        let stamp = match Stamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(error) => {
                self.stamp = None;
                self.fail(&error);
                return false;
            }
        };
        if self.stamp == Some(stamp) {
            return false;
        }
        self.stamp = Some(stamp);
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                self.failing = false;
                // Latin-1 in a comment must not cost the whole file.
                self.entries = hosts::parse(&String::from_utf8_lossy(&bytes), &self.path);
                true
            }
            Err(error) => {
                self.fail(&error);
                false
            }
        }
    }

    fn fail(&mut self, error: &std::io::Error) {
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(
                file = %self.path.display(),
                %error,
                kept = self.entries.len(),
                "cannot read hosts file; keeping its previous entries"
            );
        }
    }
}

/// The configured hosts files, as last read.
#[derive(Debug)]
pub struct HostsFiles(Vec<HostsFile>);

impl HostsFiles {
    /// Reads every file; one that cannot be read is warned about and counts as
    /// empty until it can.
    pub fn load(paths: &[PathBuf]) -> HostsFiles {
        let mut files = HostsFiles(
            paths
                .iter()
                .map(|path| HostsFile {
                    path: path.clone(),
                    stamp: None,
                    entries: Vec::new(),
                    failing: false,
                })
                .collect(),
        );
        files.refresh();
        files
    }

    fn follows(&self, paths: &[PathBuf]) -> bool {
        self.0.iter().map(|file| &file.path).eq(paths.iter())
    }

    /// The table of every file's entries, earlier files first.
    pub fn table(&self) -> RecordTable {
        hosts::table(self.0.iter().map(|file| file.entries.as_slice()))
    }

    /// Re-reads the files that changed; true if any did.
    fn refresh(&mut self) -> bool {
        let mut changed = false;
        for file in &mut self.0 {
            changed |= file.refresh();
        }
        changed
    }
}

/// Follows the hosts files until `shutdown`, replacing the table in `hosts`
/// after a change. `wanted` names the files to follow at each poll: a reload
/// that changes the list is followed at the next one (the reload itself has
/// already put the new files' table in place).
pub async fn watch_hosts(
    mut files: HostsFiles,
    hosts: Arc<Hosts>,
    wanted: impl Fn() -> Vec<PathBuf>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let paths = wanted();
        let reread = tokio::task::spawn_blocking(move || {
            if files.follows(&paths) {
                let table = files.refresh().then(|| files.table());
                (files, table)
            } else {
                let files = HostsFiles::load(&paths);
                let table = files.table();
                (files, Some(table))
            }
        });
        let table;
        (files, table) = match reread.await {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!(%error, "hosts file watcher stopped; keeping the table in use");
                return;
            }
        };
        if let Some(table) = table {
            tracing::info!(names = table.names(), "hosts files changed");
            hosts.replace(table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_seen_and_a_vanished_file_keeps_its_entries() {
        let path = std::env::temp_dir().join(format!("punctual-hosts-unit-{}", std::process::id()));
        std::fs::write(&path, "192.0.2.1 one\n").expect("write");
        let mut files = HostsFiles::load(std::slice::from_ref(&path));
        assert_eq!(files.table().names(), 2, "one and its PTR");
        assert!(!files.refresh(), "unchanged");
        std::fs::write(&path, "192.0.2.1 one\n192.0.2.2 two\n").expect("rewrite");
        assert!(files.refresh());
        assert_eq!(files.table().names(), 4);
        std::fs::remove_file(&path).expect("remove");
        assert!(!files.refresh());
        assert_eq!(files.table().names(), 4, "kept");
        std::fs::write(&path, "192.0.2.3 three\n").expect("back");
        assert!(files.refresh());
        assert_eq!(files.table().names(), 2);
        std::fs::remove_file(&path).expect("clean up");
    }
}
