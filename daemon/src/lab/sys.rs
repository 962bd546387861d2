//! The lab's contact with the system: running `ip` and friends, listing the
//! lab's namespaces and the processes inside them, signalling those
//! processes, starting detached daemons inside a namespace, and running a
//! closure on a thread that has entered a namespace (setns(2)).
//!
//! It knows nothing of the lab's layout (that is `plan.rs`); every
//! namespace it acts on is named by the caller.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A command the lab needs and the Debian package that provides it.
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
}

/// Find an executable in PATH, or in the sbin directories that a non-login
/// root shell may leave out of it.
pub fn which(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(command))
        .find(|p| p.is_file())
}

/// How to call this binary in the commands the lab suggests: `halo lab`
/// when `halo` on PATH is this very binary, otherwise the path it was
/// started by (`./target/release/halo lab` right after a build), so that
/// every hint can be pasted as is.
pub fn lab_cmd() -> &'static str {
    static CMD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CMD.get_or_init(|| {
        let argv0 = std::env::args().next().unwrap_or_default();
        let same = |p: PathBuf| fs::canonicalize(p).ok();
        let on_path = which("halo").and_then(same);
        let me = std::env::current_exe().ok().and_then(same);
        command_name(&argv0, on_path.is_some() && on_path == me)
    })
}

fn command_name(argv0: &str, halo_on_path_is_me: bool) -> String {
    if halo_on_path_is_me || argv0.is_empty() || !argv0.contains('/') {
        "halo lab".to_string()
    } else {
        format!("{argv0} lab")
    }
}

/// Root and every tool present, or one error naming all that is missing.
pub fn require(tools: &[Tool]) -> Result<()> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push(
            "root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo"
                .to_string(),
        );
    }
    let mut packages = Vec::new();
    for t in tools {
        if which(t.command).is_none() {
            missing.push(format!(
                "the `{}` command (Debian package {})",
                t.command, t.package
            ));
            if !packages.contains(&t.package) {
                packages.push(t.package);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut msg = format!("halo lab needs {}", missing.join(", "));
    if !packages.is_empty() {
        msg.push_str(&format!(
            "\ninstall with: apt-get install --no-install-recommends {}",
            packages.join(" ")
        ));
    }
    bail!(msg)
}

/// Run a command to completion; its stdout, or an error quoting its stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(resolve(program));
    cmd.args(args).stdin(Stdio::null());
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...`.
pub fn ip<S: AsRef<OsStr>>(args: &[S]) -> Result<String> {
    run("ip", args)
}

/// A bare command name as a full path when found (see [`which`]), so that
/// a PATH without the sbin directories still works.
fn resolve(program: &str) -> std::ffi::OsString {
    if program.contains('/') {
        return program.into();
    }
    which(program).map_or_else(|| program.into(), PathBuf::into_os_string)
}

/// `ip netns exec NS PROGRAM ARGS...`, to completion.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let program = resolve(program);
    let program = program.to_string_lossy();
    let mut all = vec!["netns", "exec", ns, &program];
    all.extend_from_slice(args);
    ip(&all)
}

/// The namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Result<Vec<String>> {
    // `ip netns list` prints "name (id: 3)" or just "name".
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

pub fn netns_exists(ns: &str) -> bool {
    Path::new("/var/run/netns").join(ns).exists()
}

/// Every process whose network namespace is `ns`.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The command name of a process (`halo`, `nginx`, `keepalived`).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Processes inside `ns` named `name`.
pub fn pids_named(ns: &str, name: &str) -> Vec<u32> {
    netns_pids(ns)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some(name))
        .collect()
}

/// Send a signal; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // Never a group or "every process": only positive, single pids.
    if pid > 0 {
        // SAFETY: kill(2) takes plain integers; the result only tells
        // whether the process existed, which callers check by polling.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Is the process running (a zombie is not)?
pub fn alive(pid: u32) -> bool {
    // A zombie has exited; its parent (often us) reaps it later.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Poll until none of `pids` is alive; false if `timeout` passed first.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&p| alive(p)) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start a daemon inside `ns`, detached from this terminal (its own
/// session), output appended to `log`. Returns its pid: `ip netns exec`
/// execs the program, so the pid is the daemon's own.
pub fn spawn_detached(ns: &str, program: &Path, args: &[&OsStr], log: &Path) -> Result<u32> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(resolve("ip"));
    cmd.args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // A systemd unit's notify socket is not for these daemons.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM");
    // SAFETY: setsid(2) is async-signal-safe, the only kind of call allowed
    // between fork and exec; it cannot fail in a freshly forked child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} in {ns}", program.display()))?;
    // The child is not waited for: it outlives `halo lab`, and init reaps it.
    Ok(child.id())
}

/// Run `f` on a thread that has entered network namespace `ns` and wait for
/// its result: sockets it opens live in that namespace. The calling thread
/// stays where it is (setns(2) changes one thread only).
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = Path::new("/var/run/netns").join(ns);
    let file = File::open(&path)
        .with_context(|| format!("opening {} (is the lab up?)", path.display()))?;
    let handle = thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            // SAFETY: setns(2) on an fd we own; it changes only this thread's
            // network namespace, which is what the thread exists for.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            drop(file);
            Ok(f())
        })?;
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow!("entering network namespace {ns}: {e}")),
        Err(_) => Err(anyhow!("a thread in network namespace {ns} panicked")),
    }
}

/// IPv4 addresses on `dev` inside `ns`, as `ip -o addr` reports them.
pub fn ipv4_addrs(ns: &str, dev: &str) -> Vec<std::net::Ipv4Addr> {
    let Ok(out) = ip(&["-n", ns, "-o", "-4", "addr", "show", "dev", dev]) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|&t| t == "inet")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Die quietly on a closed stdout (`halo lab status | head`), as Unix tools
/// do, instead of failing a print. Rust starts with SIGPIPE ignored.
pub fn default_sigpipe() {
    // SAFETY: restoring the default disposition of one signal; no handler
    // runs, and children started later get the default anyway.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::command_name;

    #[test]
    fn hints_name_the_binary_as_it_can_be_called() {
        assert_eq!(command_name("halo", false), "halo lab");
        assert_eq!(command_name("/usr/bin/halo", true), "halo lab");
        // Built but not installed: the path it was started by.
        assert_eq!(
            command_name("./target/release/halo", false),
            "./target/release/halo lab"
        );
        assert_eq!(command_name("", false), "halo lab");
    }
}
