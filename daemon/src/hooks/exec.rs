//! Running one external command for a hook or a track script: as the
//! configured user, in its own process group, with a clean environment, its
//! output logged line by line, killed (the whole group) at the timeout.
//!
//! This is the I/O part; it reads the clock and spawns processes. What to
//! run and what a result means is decided by the callers (`hooks`,
//! `track_script`).

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn};

use super::user::{self, RunAs};

/// The PATH every script gets: the system's, nothing from halo's caller.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Lines of output logged per stream and run; the rest is counted.
const MAX_LINES: usize = 200;
/// Longest line logged; longer lines are cut.
const MAX_LINE: usize = 2000;

/// One command to run.
pub struct Spec<'a> {
    /// What this is, for logs: `VI_1 notify_master`, `track_script chk`.
    pub label: &'a str,
    /// The `instance` (hooks) or `script` (track scripts) log field.
    pub field: Field<'a>,
    pub argv: &'a [String],
    /// Extra environment (`HALO_*`).
    pub env: &'a [(String, String)],
    pub user: &'a RunAs,
    pub timeout: Duration,
    /// Log output at info (hooks) rather than debug (periodic checks).
    pub loud: bool,
}

/// The structured field a log line carries.
#[derive(Clone, Copy)]
pub enum Field<'a> {
    Instance(&'a str),
    Script(&'a str),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Ended by a signal it did not get from halo.
    Signaled(i32),
    /// Still running at the timeout: its process group was killed.
    TimedOut(Duration),
    /// Could not be started at all (not found, not executable, bad user).
    SpawnFailed(String),
}

impl Outcome {
    /// Only exit status 0 is success; a command that cannot run fails.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(0) => f.write_str("exit status 0"),
            Outcome::Exited(126) => f.write_str("exit status 126 (found but cannot be executed)"),
            Outcome::Exited(127) => f.write_str("exit status 127 (command not found)"),
            Outcome::Exited(c) => write!(f, "exit status {c}"),
            Outcome::Signaled(s) => write!(f, "killed by signal {s}"),
            Outcome::TimedOut(t) => write!(
                f,
                "timed out after {}, process group killed",
                crate::config::format_duration(*t)
            ),
            Outcome::SpawnFailed(e) => write!(f, "cannot be started: {e}"),
        }
    }
}

/// The environment of every script: a fixed PATH, who it runs as, and the
/// caller's `HALO_*` variables. Nothing is inherited from halo.
pub fn environment(who: &RunAs, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), PATH.to_string()),
        ("HOME".to_string(), who.home.clone()),
        ("USER".to_string(), who.name.clone()),
        ("LOGNAME".to_string(), who.name.clone()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// Run `spec` to completion or its timeout.
pub async fn run(spec: &Spec<'_>) -> Outcome {
    let Some((program, args)) = spec.argv.split_first() else {
        return Outcome::SpawnFailed("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(environment(spec.user, spec.env))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills what it started too.
        .process_group(0)
        // If halo's task is dropped mid-run (runtime shutting down), do
        // not leave the command behind.
        .kill_on_drop(true);
    user::apply(&mut cmd, spec.user);
    let deadline = Instant::now() + spec.timeout;
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::SpawnFailed(format!("{program}: {e}")),
    };
    let pid = child.id();
    // If this future is dropped mid-run (a track script stopped by a
    // reload), take the whole group down, not only the first process.
    let mut guard = GroupGuard(pid);
    let label = spec.label.to_string();
    let pumps = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(pump(o, label.clone(), own(spec.field), spec.loud))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(pump(e, label.clone(), own(spec.field), spec.loud))),
    ];
    let outcome = match timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => Outcome::Exited(c),
                (None, Some(s)) => Outcome::Signaled(s),
                (None, None) => Outcome::SpawnFailed(format!("unknown wait status {status}")),
            }
        }
        Ok(Err(e)) => Outcome::SpawnFailed(format!("waiting for {program}: {e}")),
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            Outcome::TimedOut(spec.timeout)
        }
    };
    guard.0 = None;
    // Output may still be open in a process the command left behind; read
    // it until the deadline at most.
    for p in pumps.into_iter().flatten() {
        let abort = p.abort_handle();
        if timeout_at(deadline.max(Instant::now() + Duration::from_millis(100)), p)
            .await
            .is_err()
        {
            abort.abort();
            debug!("{label}: output still open after the command ended; stopped reading it");
        }
    }
    outcome
}

/// Kills the process group when dropped, unless disarmed (`.0 = None`).
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL the process group `pgid` (the command and all it started).
fn kill_group(pgid: u32) {
    if let Ok(p) = i32::try_from(pgid) {
        // ESRCH (already gone) is fine.
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
}

enum OwnedField {
    Instance(String),
    Script(String),
}

fn own(f: Field<'_>) -> OwnedField {
    match f {
        Field::Instance(i) => OwnedField::Instance(i.to_string()),
        Field::Script(s) => OwnedField::Script(s.to_string()),
    }
}

/// Log every line of `r` (lossy UTF-8, capped in length and count).
async fn pump(r: impl AsyncRead + Unpin, label: String, field: OwnedField, loud: bool) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    let mut logged = 0usize;
    let mut skipped = 0usize;
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if logged >= MAX_LINES {
            skipped += 1;
            continue;
        }
        logged += 1;
        let text = String::from_utf8_lossy(&buf);
        let mut line = text.trim_end_matches(['\n', '\r']).to_string();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" [...]");
        }
        match (&field, loud) {
            (OwnedField::Instance(i), true) => info!(instance = %i, "{label}: {line}"),
            (OwnedField::Instance(i), false) => debug!(instance = %i, "{label}: {line}"),
            (OwnedField::Script(s), true) => info!(script = %s, "{label}: {line}"),
            (OwnedField::Script(s), false) => debug!(script = %s, "{label}: {line}"),
        }
    }
    if skipped > 0 {
        warn!("{label}: {skipped} more line(s) of output not logged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> RunAs {
        let name = std::env::var("USER").unwrap_or_else(|_| "root".into());
        user::resolve(&name)
            .or_else(|_| user::resolve("root"))
            .unwrap()
    }

    async fn run_sh(script: &str, timeout: Duration) -> Outcome {
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
        let who = me();
        run(&Spec {
            label: "test",
            field: Field::Script("test"),
            argv: &argv,
            env: &[("HALO_X".to_string(), "y".to_string())],
            user: &who,
            timeout,
            loud: false,
        })
        .await
    }

    #[tokio::test]
    async fn exit_status_is_reported() {
        assert_eq!(
            run_sh("exit 0", Duration::from_secs(5)).await,
            Outcome::Exited(0)
        );
        assert_eq!(
            run_sh("exit 3", Duration::from_secs(5)).await,
            Outcome::Exited(3)
        );
        assert_eq!(
            run_sh("/nonexistent/x", Duration::from_secs(5)).await,
            Outcome::Exited(127)
        );
    }

    #[tokio::test]
    async fn environment_is_clean_and_has_ours() {
        let o = run_sh(
            "[ \"$HALO_X\" = y ] && [ \"$PATH\" = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ] && [ -z \"$CARGO\" ] && [ \"$(pwd)\" = / ]",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(o, Outcome::Exited(0));
    }

    #[tokio::test]
    async fn missing_program_cannot_start() {
        let argv = vec!["/nonexistent/halo-hook".to_string()];
        let who = me();
        let o = run(&Spec {
            label: "test",
            field: Field::Instance("VI_1"),
            argv: &argv,
            env: &[],
            user: &who,
            timeout: Duration::from_secs(5),
            loud: true,
        })
        .await;
        assert!(matches!(o, Outcome::SpawnFailed(_)), "{o:?}");
        assert!(!o.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("halo-exec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let o = run_sh(&script, Duration::from_millis(500)).await;
        assert_eq!(o, Outcome::TimedOut(Duration::from_millis(500)));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the group: it is gone (or a zombie
        // of init's, never still sleeping).
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z "),
            "background child still alive: {state}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
