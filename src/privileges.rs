//! Dropping root once the sockets are bound: supplementary groups, then the group,
//! then the user, each step checked, and a final check that root is gone for good.
//! A resolver that parses packets from the network should not do it as root; port
//! 53 itself needs only CAP_NET_BIND_SERVICE, which the service manager can grant.
//!
//! The identity comes from `[process]` ([`crate::config::Config::identity`]). glibc
//! and musl apply setgroups/setgid/setuid to every thread of the process, so the
//! runtime's worker threads, started before the sockets were bound, change too.

use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::{
    Gid, Uid, getegid, geteuid, getgid, getuid, initgroups, setgid, setgroups, setuid,
};
use thiserror::Error;

/// Who to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, for initgroups(3).
    pub user: CString,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: SupplementaryGroups,
}

/// Which supplementary groups the process keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupplementaryGroups {
    /// The user's groups from the group database (initgroups(3)); `[process]` names
    /// no group.
    OfUser,
    /// Only the target group; `[process] group` is set.
    None,
}

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("cannot set the supplementary groups of {user:?}: {source}")]
    Groups {
        user: String,
        #[source]
        source: Errno,
    },
    #[error("cannot switch to group {gid}: {source}")]
    Group {
        gid: Gid,
        #[source]
        source: Errno,
    },
    #[error("cannot switch to user {user:?} (uid {uid}): {source}")]
    User {
        user: String,
        uid: Uid,
        #[source]
        source: Errno,
    },
    #[error(
        "after switching to uid {uid} gid {gid} the process still runs as uid {real}/{effective} \
         gid {real_gid}/{effective_gid}; refusing to serve"
    )]
    StillPrivileged {
        uid: Uid,
        gid: Gid,
        real: Uid,
        effective: Uid,
        real_gid: Gid,
        effective_gid: Gid,
    },
    #[error("after switching to uid {0} the process could become root again; refusing to serve")]
    Regained(Uid),
}

/// Switches to `identity`, if given, and verifies the switch; without one, warns
/// when running as root. Call after binding every socket.
pub fn drop_to(identity: Option<&Identity>) -> Result<(), PrivilegeError> {
    let Some(identity) = identity else {
        if geteuid().is_root() {
            tracing::warn!(
                "running as root: set [process] user (such as \"nobody\") so punctual drops \
                 root after binding its sockets"
            );
        }
        return Ok(());
    };
    let user = identity.user.to_string_lossy().into_owned();
    if !geteuid().is_root() && geteuid() == identity.uid && getuid() == identity.uid {
        tracing::info!(user, uid = %identity.uid, "already running as [process] user");
        return Ok(());
    }
    // Groups first: once the user is switched, changing groups is no longer allowed.
    let groups = match identity.groups {
        SupplementaryGroups::OfUser => initgroups(&identity.user, identity.gid),
        SupplementaryGroups::None => setgroups(&[identity.gid]),
    };
    groups.map_err(|source| PrivilegeError::Groups {
        user: user.clone(),
        source,
    })?;
    setgid(identity.gid).map_err(|source| PrivilegeError::Group {
        gid: identity.gid,
        source,
    })?;
    setuid(identity.uid).map_err(|source| PrivilegeError::User {
        user: user.clone(),
        uid: identity.uid,
        source,
    })?;
    let (real, effective) = (getuid(), geteuid());
    let (real_gid, effective_gid) = (getgid(), getegid());
    if real != identity.uid
        || effective != identity.uid
        || real.is_root()
        || effective.is_root()
        || real_gid != identity.gid
        || effective_gid != identity.gid
    {
        return Err(PrivilegeError::StillPrivileged {
            uid: identity.uid,
            gid: identity.gid,
            real,
            effective,
            real_gid,
            effective_gid,
        });
    }
    // setuid(2) from root sets the saved uid too; if it had not, root could come back.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Regained(identity.uid));
    }
    tracing::info!(user, uid = %identity.uid, gid = %identity.gid, "dropped privileges");
    Ok(())
}
