//! Who a hook or track script runs as: `script_user` / `user` resolved to
//! uid, gid and supplementary groups once, at start, so a missing user is a
//! start-up error and not a surprise at the first failover.
//!
//! It does not decide the default (config does: "halo", never root unless
//! the file says "root") and does not run anything.

use std::ffi::CString;
use std::fmt;

use nix::unistd::{Gid, Uid, User};

/// A resolved user, ready to switch to in a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    /// False when halo already runs as this user (nothing to switch).
    pub switch: bool,
}

/// Why a user cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    NoSuchUser(String),
    Lookup(String, String),
    /// halo runs unprivileged as another user and cannot switch.
    CannotSwitch {
        user: String,
        running_as: u32,
    },
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NoSuchUser(u) => write!(
                f,
                "user \"{u}\" does not exist: create it (useradd --system {u}) or name another with script_user / user; halo never falls back to root"
            ),
            UserError::Lookup(u, e) => write!(f, "looking up user \"{u}\": {e}"),
            UserError::CannotSwitch { user, running_as } => write!(
                f,
                "cannot run scripts as \"{user}\": halo runs as uid {running_as} without the right to change user; set script_user / user to the user halo runs as"
            ),
        }
    }
}

impl std::error::Error for UserError {}

/// Look `name` up in the user database (NSS) and check that halo can
/// become it.
pub fn resolve(name: &str) -> Result<RunAs, UserError> {
    let user = User::from_name(name)
        .map_err(|e| UserError::Lookup(name.into(), e.to_string()))?
        .ok_or_else(|| UserError::NoSuchUser(name.into()))?;
    let me = Uid::effective();
    let switch = user.uid != me;
    if switch && !me.is_root() {
        return Err(UserError::CannotSwitch {
            user: name.into(),
            running_as: me.as_raw(),
        });
    }
    let groups = if switch {
        let cname =
            CString::new(name).map_err(|e| UserError::Lookup(name.into(), e.to_string()))?;
        nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| UserError::Lookup(name.into(), format!("groups: {e}")))?
            .into_iter()
            .map(Gid::as_raw)
            .collect()
    } else {
        Vec::new()
    };
    Ok(RunAs {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir.display().to_string(),
        switch,
    })
}

/// Make `cmd` drop to `who` in the child, between fork and exec: groups
/// first, then gid, then uid (after setuid the others are not allowed).
pub fn apply(cmd: &mut tokio::process::Command, who: &RunAs) {
    if !who.switch {
        return;
    }
    let groups: Vec<Gid> = who.groups.iter().copied().map(Gid::from_raw).collect();
    let (uid, gid) = (Uid::from_raw(who.uid), Gid::from_raw(who.gid));
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the three async-signal-safe system calls below; `groups` was
    // allocated before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves() {
        let r = resolve("root");
        // As root there is nothing to switch; as anyone else root cannot be
        // switched to, and the error says so.
        match r {
            Ok(r) => {
                assert_eq!(r.uid, 0);
                assert_eq!(r.gid, 0);
                assert!(!r.switch);
            }
            Err(e) => assert!(matches!(e, UserError::CannotSwitch { .. }), "{e}"),
        }
    }

    #[test]
    fn missing_user_is_a_clear_error() {
        let e = resolve("halo-no-such-user-x").unwrap_err();
        assert_eq!(e, UserError::NoSuchUser("halo-no-such-user-x".into()));
        assert!(e
            .to_string()
            .contains("useradd --system halo-no-such-user-x"));
        assert!(e.to_string().contains("never falls back to root"));
    }
}
