//! `halo vrrp release` kept across a restart of halo (not a reboot).
//!
//! A release is what a rolling upgrade relies on: the node hands the VIP
//! over, the package is upgraded, postinst restarts halo, and the node must
//! come back as a backup until the operator (or the role) reclaims. A
//! release held only in memory was lost at that restart, and the node came
//! back at full priority and took the VIP back before its backends were
//! healthy. So each release is also a small file beside the control socket
//! (`/run/halo/release-NAME` under the Debian unit's `RuntimeDirectory=`):
//! written by `release`, removed by `reclaim`, read when the instance
//! starts. An expired one is removed when read.
//!
//! The deadline of `release --for` is kept on `CLOCK_MONOTONIC`, which goes
//! on across a restart of the process and not across a reboot (nor does
//! wall-clock time jump it: a Pi has no RTC and its clock jumps when NTP
//! first syncs); the boot id in the file makes a file from an earlier boot
//! count as nothing even when the directory is not a tmpfs.
//!
//! [`parse`] and [`render`] are pure; [`Store`] does the file I/O.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// A release read back from its file, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Until `halo vrrp reclaim`.
    UntilReclaim,
    /// For this much longer.
    For(Duration),
    /// Over (or from an earlier boot): forget it.
    Over,
}

/// The file's text for a release until `until_ns` on CLOCK_MONOTONIC (none:
/// until reclaimed), made during boot `boot_id`.
pub fn render(boot_id: &str, until_ns: Option<u128>) -> String {
    let until = match until_ns {
        Some(ns) => ns.to_string(),
        None => "reclaim".to_string(),
    };
    format!(
        "# halo vrrp release: kept across restarts of halo, not reboots\nboot_id={boot_id}\nuntil_monotonic_ns={until}\n"
    )
}

/// Read a release file's text at `now_ns` (CLOCK_MONOTONIC) during boot
/// `boot_id`.
pub fn parse(text: &str, boot_id: &str, now_ns: u128) -> Result<Restored, String> {
    let (mut boot, mut until) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("boot_id", v)) => boot = Some(v),
            Some(("until_monotonic_ns", v)) => until = Some(v),
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    let boot = boot.ok_or("no boot_id line")?;
    let until = until.ok_or("no until_monotonic_ns line")?;
    if boot != boot_id {
        return Ok(Restored::Over);
    }
    if until == "reclaim" {
        return Ok(Restored::UntilReclaim);
    }
    let ns: u128 = until
        .parse()
        .map_err(|_| format!("until_monotonic_ns={until:?} is not a number"))?;
    Ok(match ns.checked_sub(now_ns) {
        Some(left) if left > 0 => {
            Restored::For(Duration::from_nanos(left.min(u64::MAX as u128) as u64))
        }
        _ => Restored::Over,
    })
}

/// Where the releases of one halo live: the control socket's directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store beside `control_socket` (`/run/halo/halo.sock` ->
    /// `/run/halo/`).
    pub fn beside(control_socket: &Path) -> Store {
        let dir = control_socket
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The file of `instance`. Instance names are config keys: anything
    /// but letters, digits, `_`, `-` and `.` is written as `%XX` (so no
    /// `/`; and behind the prefix, dots are only dots).
    pub fn path(&self, instance: &str) -> PathBuf {
        let mut name = String::from("release-");
        for b in instance.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        self.dir.join(name)
    }

    /// Record a release of `instance` lasting `for_` (none: until reclaimed).
    pub fn save(&self, instance: &str, for_: Option<Duration>) -> Result<()> {
        let until = for_.map(|d| monotonic_ns() + d.as_nanos());
        let path = self.path(instance);
        // Written whole, then renamed: a crash leaves the old file or the
        // new one. No instance's file starts with a dot.
        let tmp = self.dir.join(format!(
            ".{}.tmp",
            path.file_name().expect("a file name").to_string_lossy()
        ));
        std::fs::write(&tmp, render(&boot_id(), until))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Forget the release of `instance` (reclaimed). No file is fine.
    pub fn remove(&self, instance: &str) -> Result<()> {
        let path = self.path(instance);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// The release of `instance` that a previous halo left, if it still
    /// holds; an expired or unreadable file is removed (and the error told).
    pub fn load(&self, instance: &str) -> Result<Option<Restored>> {
        let path = self.path(instance);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match parse(&text, &boot_id(), monotonic_ns()) {
            Ok(Restored::Over) => {
                self.remove(instance)?;
                Ok(None)
            }
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                let _ = self.remove(instance);
                anyhow::bail!("{}: {e} (removed)", path.display())
            }
        }
    }
}

/// Now on CLOCK_MONOTONIC, the clock `Instant` (std and tokio) reads.
fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// This boot's id (random per boot); empty if /proc is not there.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "1b6e5b8e-0000-4000-8000-000000000001";

    #[test]
    fn until_reclaim_round_trips() {
        let t = render(BOOT, None);
        assert_eq!(parse(&t, BOOT, 5), Ok(Restored::UntilReclaim));
    }

    #[test]
    fn a_timed_release_comes_back_with_what_is_left() {
        let t = render(BOOT, Some(10_000_000_000));
        assert_eq!(
            parse(&t, BOOT, 4_000_000_000),
            Ok(Restored::For(Duration::from_secs(6)))
        );
        assert_eq!(parse(&t, BOOT, 10_000_000_000), Ok(Restored::Over));
        assert_eq!(parse(&t, BOOT, 11_000_000_000), Ok(Restored::Over));
    }

    #[test]
    fn a_file_from_an_earlier_boot_is_over() {
        let t = render("another boot", None);
        assert_eq!(parse(&t, BOOT, 0), Ok(Restored::Over));
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        assert!(parse("", BOOT, 0).is_err());
        assert!(parse("boot_id=x\nuntil_monotonic_ns=soon\n", "x", 0).is_err());
        assert!(parse("boot_id=x\nuntil_monotonic_ns=1\nextra\n", "x", 0).is_err());
    }

    #[test]
    fn the_file_is_beside_the_control_socket_and_its_name_is_safe() {
        let s = Store::beside(Path::new("/run/halo/halo.sock"));
        assert_eq!(s.path("VI_1"), Path::new("/run/halo/release-VI_1"));
        assert_eq!(s.path("../x"), Path::new("/run/halo/release-..%2Fx"));
        assert_eq!(s.path("a.b"), Path::new("/run/halo/release-a.b"));
        let s = Store::beside(Path::new("halo.sock"));
        assert_eq!(s.path("VI_1"), Path::new("./release-VI_1"));
    }

    #[test]
    fn save_load_remove() {
        let dir = std::env::temp_dir().join(format!("halo-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Store::beside(&dir.join("halo.sock"));
        assert_eq!(s.load("VI_1").unwrap(), None);
        s.save("VI_1", None).unwrap();
        assert_eq!(s.load("VI_1").unwrap(), Some(Restored::UntilReclaim));
        s.save("VI_1", Some(Duration::from_secs(3600))).unwrap();
        assert!(
            matches!(s.load("VI_1").unwrap(), Some(Restored::For(d)) if d > Duration::from_secs(3000))
        );
        s.save("VI_1", Some(Duration::from_nanos(1))).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.load("VI_1").unwrap(), None, "expired");
        assert!(
            !s.path("VI_1").exists(),
            "an expired release file is removed"
        );
        s.save("VI_1", None).unwrap();
        s.remove("VI_1").unwrap();
        s.remove("VI_1").unwrap();
        assert_eq!(s.load("VI_1").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
