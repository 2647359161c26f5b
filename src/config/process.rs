//! `[process]`: the user and group punctual switches to once its sockets are bound,
//! and the lookup of those names in the system's user and group databases, with
//! errors that point at the key's line; and the number of worker threads.

use std::ffi::CString;

use nix::unistd::{Group, User};
use serde::Deserialize;

use super::{Config, ConfigError};
use crate::privileges::{Identity, SupplementaryGroups};

/// `[process]`: who punctual runs as after binding its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// Switch to this user (a name from the user database) after binding. Default
    /// none: keep running as started (a warning is logged when that is root).
    pub user: Option<String>,
    /// Switch to this group, and keep no other. Default none: the user's primary
    /// group and its supplementary groups from the group database.
    pub group: Option<String>,
    /// Worker threads of the async runtime. Default 0: one per CPU (tokio's
    /// default). One thread spares a miss the wake-ups between threads: 9–30%
    /// less CPU per miss on a 2-CPU VM, but up to 15% fewer misses per second
    /// at full load (README, "Benchmarks").
    pub threads: usize,
}

/// The most `[process] threads` accepted: far beyond any core count a local
/// resolver runs on, and a typo such as 10000 is caught at start.
pub const MAX_THREADS: usize = 1024;

impl Config {
    /// `[process] threads` as the runtime takes it: `None` for one per CPU.
    pub fn worker_threads(&self) -> Option<usize> {
        (self.process.threads > 0).then_some(self.process.threads)
    }

    /// `[process]` rules that need no lookup: `group` only together with `user`,
    /// and at most [`MAX_THREADS`] threads.
    pub(super) fn validate_process(&self) -> Result<(), ConfigError> {
        if self.process.threads > MAX_THREADS {
            return Err(self.invalid(
                &[self.key("process.threads", |config| &config.process.threads)],
                format!(
                    "process.threads must be at most {MAX_THREADS} (0: one per CPU), got {}",
                    self.process.threads
                ),
            ));
        }
        if self.process.group.is_some() && self.process.user.is_none() {
            return Err(self.invalid(
                &[self.key("process.group", |config| &config.process.group)],
                "process.group needs process.user: punctual switches group only when it \
                 switches user"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The identity to switch to after binding, looked up by name; `None` without
    /// `[process] user`. An unknown name, or a user that is root, is an error at the
    /// key's line. Call it before binding, so a typo stops the start, not the drop.
    pub fn identity(&self) -> Result<Option<Identity>, ConfigError> {
        let Some(name) = &self.process.user else {
            return Ok(None);
        };
        let user_key = self.key("process.user", |config| &config.process.user);
        let user = match User::from_name(name) {
            Ok(Some(user)) => user,
            Ok(None) => {
                return Err(self.invalid(
                    &[user_key],
                    format!("process.user: no user named {name:?} on this system"),
                ));
            }
            Err(error) => {
                return Err(self.invalid(
                    &[user_key],
                    format!("process.user: cannot look up user {name:?}: {error}"),
                ));
            }
        };
        if user.uid.is_root() {
            return Err(self.invalid(
                &[user_key],
                format!(
                    "process.user: {name:?} is root (uid 0); name an unprivileged user such \
                     as \"nobody\", or remove the key"
                ),
            ));
        }
        let (gid, groups) = match &self.process.group {
            None => (user.gid, SupplementaryGroups::OfUser),
            Some(group_name) => {
                let group_key = self.key("process.group", |config| &config.process.group);
                match Group::from_name(group_name) {
                    Ok(Some(group)) => (group.gid, SupplementaryGroups::None),
                    Ok(None) => {
                        return Err(self.invalid(
                            &[group_key],
                            format!("process.group: no group named {group_name:?} on this system"),
                        ));
                    }
                    Err(error) => {
                        return Err(self.invalid(
                            &[group_key],
                            format!("process.group: cannot look up group {group_name:?}: {error}"),
                        ));
                    }
                }
            }
        };
        // A name from the user database holds no NUL byte; one that did could not
        // be passed to initgroups(3).
        let Ok(c_name) = CString::new(name.as_bytes()) else {
            return Err(self.invalid(
                &[user_key],
                format!("process.user: {name:?} contains a NUL byte"),
            ));
        };
        Ok(Some(Identity {
            user: c_name,
            uid: user.uid,
            gid,
            groups,
        }))
    }
}
