//! `[track_script.NAME]`: run a command every `interval` and turn its exit
//! status into an up/down state that VRRP instances track (`track = [{
//! script = "NAME" }]`), as keepalived's `vrrp_script` does.
//!
//! Exit status 0 is success. Everything else is failure: a non-zero exit,
//! a timeout, 126/127 (cannot execute / not found) and a command that
//! cannot be started at all. (keepalived counts a script it cannot run as
//! success; a check that cannot run proves nothing, so halo does not.)
//!
//! The rise/fall counting is the health checker's pure [`Checker`], fed
//! one result per run; this module is its driver: it reads the clock,
//! spawns the command (via `hooks::exec`) and publishes state changes on
//! a `watch` channel. It does not compute priorities (the VRRP driver does).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::TrackScript;
use crate::health::checker::{Checker, Params};
use crate::health::CheckResult;
use crate::hooks::exec;
use crate::hooks::user::{self, RunAs};

/// The checker settings of a track script: one interval (there is no fast
/// interval for scripts), and the state starts UP but provisional, so the
/// first run confirms it or flips it at once, like keepalived's first run.
pub fn params(s: &TrackScript) -> Params {
    Params {
        interval: s.interval,
        fast_interval: s.interval,
        rise: s.rise,
        fall: s.fall,
        initial_up: true,
        observe_connect_errors: false,
        observe_5xx: false,
    }
}

/// The result a run counts as.
pub fn result_of(outcome: &exec::Outcome) -> CheckResult {
    if outcome.success() {
        CheckResult::success(outcome.to_string())
    } else {
        CheckResult::failure(outcome.to_string())
    }
}

/// Where VRRP instances read script states: name -> up.
#[derive(Clone)]
pub struct ScriptWatch(watch::Receiver<BTreeMap<String, bool>>);

impl ScriptWatch {
    /// A script that is not running (not configured) counts as up: the
    /// config loader already refuses tracks that name unknown scripts.
    pub fn is_down(&self, name: &str) -> bool {
        !self.0.borrow().get(name).copied().unwrap_or(true)
    }

    /// Wait for any script's state to change; `false` once the scripts
    /// have stopped for good.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// The running track scripts of one config.
pub struct ScriptRuntime {
    tasks: Vec<JoinHandle<()>>,
    /// Kept so that, with no scripts, watchers wait instead of seeing a
    /// closed channel.
    tx: std::sync::Arc<watch::Sender<BTreeMap<String, bool>>>,
    rx: watch::Receiver<BTreeMap<String, bool>>,
}

impl ScriptRuntime {
    /// Resolve every script's user (a missing user is an error now, not at
    /// the first check) and start one task per script.
    pub fn start(scripts: &[TrackScript]) -> Result<ScriptRuntime> {
        let mut users = Vec::new();
        for s in scripts {
            let who =
                user::resolve(&s.user).with_context(|| format!("[track_script.{}]", s.name))?;
            users.push(who);
        }
        let initial: BTreeMap<String, bool> =
            scripts.iter().map(|s| (s.name.clone(), true)).collect();
        let (tx, rx) = watch::channel(initial);
        let tx = std::sync::Arc::new(tx);
        let tasks = scripts
            .iter()
            .zip(users)
            .map(|(s, who)| tokio::spawn(run_script(s.clone(), who, tx.clone())))
            .collect();
        Ok(ScriptRuntime { tasks, tx, rx })
    }

    /// No scripts (what is left after `stop`).
    pub fn empty() -> ScriptRuntime {
        let (tx, rx) = watch::channel(BTreeMap::new());
        ScriptRuntime {
            tasks: Vec::new(),
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    pub fn watch(&self) -> ScriptWatch {
        ScriptWatch(self.rx.clone())
    }

    /// Stop every script; a run in progress is killed with its group.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        drop(self.tx);
    }
}

async fn run_script(
    s: TrackScript,
    who: RunAs,
    tx: std::sync::Arc<watch::Sender<BTreeMap<String, bool>>>,
) {
    let label = format!("track_script {}", s.name);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.name.hash(&mut h);
    let now = tokio::time::Instant::now().into_std();
    // The first run is right away: the priority should reflect the check
    // as soon as possible after start.
    let mut checker = Checker::new(label.clone(), params(&s), now, Duration::ZERO, h.finish());
    info!(
        script = %s.name,
        "{label}: running {:?} as {} every {}, timeout {}, rise {}, fall {}",
        s.command,
        who.name,
        crate::config::format_duration(s.interval),
        crate::config::format_duration(s.timeout),
        s.rise,
        s.fall
    );
    let env = vec![("HALO_TRACK_SCRIPT".to_string(), s.name.clone())];
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(checker.next_probe())).await;
        let outcome = exec::run(&exec::Spec {
            label: &label,
            field: exec::Field::Script(&s.name),
            argv: &s.command,
            env: &env,
            user: &who,
            timeout: s.timeout,
            loud: false,
        })
        .await;
        let result = result_of(&outcome);
        let ok = result.ok;
        let now = tokio::time::Instant::now().into_std();
        match checker.observe(now, result) {
            Some(t) if t.up => {
                info!(script = %s.name, "{}", t.reason);
                tx.send_modify(|m| {
                    m.insert(s.name.clone(), true);
                });
            }
            Some(t) => {
                warn!(script = %s.name, "{}", t.reason);
                tx.send_modify(|m| {
                    m.insert(s.name.clone(), false);
                });
            }
            None if !ok => debug!(script = %s.name, "{label}: failed: {outcome}"),
            None => debug!(script = %s.name, "{label}: {outcome}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn script(rise: u32, fall: u32) -> TrackScript {
        TrackScript {
            name: "chk".into(),
            command: vec!["/bin/true".into()],
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            rise,
            fall,
            weight: -2,
            user: "halo".into(),
        }
    }

    fn feed(c: &mut Checker, t: &mut Instant, o: exec::Outcome) -> Option<bool> {
        *t += Duration::from_secs(2);
        c.observe(*t, result_of(&o)).map(|tr| tr.up)
    }

    #[test]
    fn cannot_run_counts_as_failure() {
        for o in [
            exec::Outcome::Exited(127),
            exec::Outcome::Exited(126),
            exec::Outcome::Exited(1),
            exec::Outcome::TimedOut(Duration::from_secs(2)),
            exec::Outcome::SpawnFailed("No such file or directory".into()),
            exec::Outcome::Signaled(9),
        ] {
            assert!(!result_of(&o).ok, "{o} must be a failure");
        }
        assert!(result_of(&exec::Outcome::Exited(0)).ok);
        assert!(exec::Outcome::Exited(127)
            .to_string()
            .contains("command not found"));
    }

    #[test]
    fn first_result_decides_then_fall_and_rise_count() {
        let mut t = Instant::now();
        let mut c = Checker::new(
            "track_script chk",
            params(&script(2, 3)),
            t,
            Duration::ZERO,
            1,
        );
        assert!(c.is_up(), "starts up (provisionally)");
        // The first success confirms UP; then three failures to go DOWN.
        assert_eq!(feed(&mut c, &mut t, exec::Outcome::Exited(0)), None);
        assert_eq!(feed(&mut c, &mut t, exec::Outcome::Exited(1)), None);
        assert_eq!(feed(&mut c, &mut t, exec::Outcome::Exited(127)), None);
        assert_eq!(
            feed(
                &mut c,
                &mut t,
                exec::Outcome::TimedOut(Duration::from_secs(2))
            ),
            Some(false)
        );
        // Two successes to come back.
        assert_eq!(feed(&mut c, &mut t, exec::Outcome::Exited(0)), None);
        assert_eq!(feed(&mut c, &mut t, exec::Outcome::Exited(0)), Some(true));
    }

    #[test]
    fn a_script_failing_from_the_start_is_down_after_one_run() {
        let mut t = Instant::now();
        let mut c = Checker::new(
            "track_script chk",
            params(&script(2, 2)),
            t,
            Duration::ZERO,
            1,
        );
        assert_eq!(
            feed(&mut c, &mut t, exec::Outcome::Exited(127)),
            Some(false)
        );
    }

    #[test]
    fn interval_is_the_spacing_between_runs() {
        let t = Instant::now();
        let mut c = Checker::new(
            "track_script chk",
            params(&script(2, 2)),
            t,
            Duration::ZERO,
            1,
        );
        assert_eq!(c.next_probe(), t);
        let _ = c.observe(t, CheckResult::success("exit status 0"));
        let gap = c.next_probe() - t;
        // ±1/16 jitter around the 2s interval.
        assert!(
            gap >= Duration::from_millis(1875) && gap <= Duration::from_millis(2125),
            "{gap:?}"
        );
    }
}
