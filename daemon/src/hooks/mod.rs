//! Notify hooks: the `notify_master`, `notify_backup`, `notify_fault`,
//! `notify_stop` and generic `notify` commands of a `[vrrp.NAME]`
//! instance, run when its state changes.
//!
//! The VRRP driver calls [`Hooks::fire`], which only queues: hooks never
//! delay an advert. Each instance has one queue and one worker, so its hooks
//! run one at a time, in the order the states happened. A failed
//! `notify_master` is retried `notify_retries` times unless a newer state
//! change is already waiting (a retry of "become master" after becoming
//! backup would be wrong).
//!
//! [`plan`] is the pure part: which commands, with which arguments and
//! environment, for a state. Running them (user, timeout, output) is
//! `exec`; resolving the user is `user`.

// A driver: it reads the clock (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod exec;
pub mod user;

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Hooks as HookConfig, VrrpInstance};
use user::{RunAs, UserError};

/// Pause between attempts of a failed `notify_master`.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);

/// The states hooks are run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    Master,
    Backup,
    /// The instance's interface is down.
    Fault,
    /// halo stops the instance (shutdown, or a reload that removes it).
    Stop,
}

impl HookState {
    /// The word in `HALO_STATE` and the generic hook's third argument, as
    /// keepalived spells it.
    pub fn word(self) -> &'static str {
        match self {
            HookState::Master => "MASTER",
            HookState::Backup => "BACKUP",
            HookState::Fault => "FAULT",
            HookState::Stop => "STOP",
        }
    }

    fn key(self) -> &'static str {
        match self {
            HookState::Master => "notify_master",
            HookState::Backup => "notify_backup",
            HookState::Fault => "notify_fault",
            HookState::Stop => "notify_stop",
        }
    }

    fn command(self, h: &HookConfig) -> Option<&Vec<String>> {
        match self {
            HookState::Master => h.master.as_ref(),
            HookState::Backup => h.backup.as_ref(),
            HookState::Fault => h.fault.as_ref(),
            HookState::Stop => h.stop.as_ref(),
        }
    }
}

/// One command to run for a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The config key it comes from, e.g. `notify_master`.
    pub key: &'static str,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// 1 + retries.
    pub attempts: u32,
}

/// The commands for `state` in run order: the state's own hook, then the
/// generic `notify` with `INSTANCE NAME STATE PRIORITY` appended (the order
/// and arguments of keepalived).
pub fn plan(inst: &VrrpInstance, state: HookState, priority: u8) -> Vec<Invocation> {
    let vips: Vec<String> = inst
        .virtual_ips
        .iter()
        .map(|n| n.addr().to_string())
        .collect();
    let env = vec![
        ("HALO_INSTANCE".to_string(), inst.name.clone()),
        ("HALO_STATE".to_string(), state.word().to_string()),
        ("HALO_VIPS".to_string(), vips.join(",")),
        ("HALO_PRIORITY".to_string(), priority.to_string()),
    ];
    let mut out = Vec::new();
    if let Some(argv) = state.command(&inst.hooks) {
        out.push(Invocation {
            key: state.key(),
            argv: argv.clone(),
            env: env.clone(),
            attempts: if state == HookState::Master {
                1 + inst.hooks.retries
            } else {
                1
            },
        });
    }
    if let Some(argv) = &inst.hooks.notify {
        let mut argv = argv.clone();
        argv.extend([
            "INSTANCE".to_string(),
            inst.name.clone(),
            state.word().to_string(),
            priority.to_string(),
        ]);
        out.push(Invocation {
            key: "notify",
            argv,
            env,
            attempts: 1,
        });
    }
    out
}

// === the per-instance queue ===

/// The hook queue of one instance.
pub struct Hooks {
    tx: mpsc::UnboundedSender<(HookState, u8)>,
    task: JoinHandle<()>,
}

impl Hooks {
    /// Resolve the instance's `script_user` and start its worker; `None`
    /// when the instance has no hooks. A user that does not exist (or that
    /// halo cannot become) is an error here, at start.
    pub fn start(inst: &VrrpInstance) -> Result<Option<Hooks>, UserError> {
        if !inst.hooks.any() {
            return Ok(None);
        }
        let who = user::resolve(&inst.hooks.user)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(worker(inst.clone(), who, rx));
        Ok(Some(Hooks { tx, task }))
    }

    /// Queue the hooks for `state`; never waits.
    pub fn fire(&self, state: HookState, priority: u8) {
        let _ = self.tx.send((state, priority));
    }

    /// Close the queue and wait for what is queued to finish (each run is
    /// bounded by `script_timeout`).
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn worker(inst: VrrpInstance, who: RunAs, mut rx: mpsc::UnboundedReceiver<(HookState, u8)>) {
    let mut pending: VecDeque<(HookState, u8)> = VecDeque::new();
    loop {
        let (state, priority) = match pending.pop_front() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        'invocations: for inv in plan(&inst, state, priority) {
            let label = format!("{} {}", inst.name, inv.key);
            for attempt in 1..=inv.attempts {
                let tries = if inv.attempts > 1 {
                    format!(" (attempt {attempt} of {})", inv.attempts)
                } else {
                    String::new()
                };
                info!(
                    instance = %inst.name,
                    state = state.word(),
                    "{label}: running {:?} as {}{tries}",
                    inv.argv,
                    who.name
                );
                let outcome = exec::run(&exec::Spec {
                    label: &label,
                    field: exec::Field::Instance(&inst.name),
                    argv: &inv.argv,
                    env: &inv.env,
                    user: &who,
                    timeout: inst.hooks.timeout,
                    loud: true,
                })
                .await;
                if outcome.success() {
                    info!(instance = %inst.name, "{label}: {outcome}");
                    break;
                }
                warn!(instance = %inst.name, "{label}: failed: {outcome}{tries}");
                if attempt == inv.attempts {
                    break;
                }
                // A newer state change makes this retry pointless.
                while let Ok(e) = rx.try_recv() {
                    pending.push_back(e);
                }
                if pending.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_DELAY) => {}
                        e = rx.recv() => if let Some(e) = e { pending.push_back(e) },
                    }
                }
                if !pending.is_empty() {
                    warn!(instance = %inst.name, "{label}: not retried: the state changed again");
                    break 'invocations;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(hooks: &str) -> VrrpInstance {
        let text = format!(
            "[vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 51\npriority = 101\nvirtual_ips = [\"192.0.2.100/24\", \"192.0.2.101\"]\n{hooks}"
        );
        crate::config::parse_str("t.toml", &text)
            .unwrap()
            .vrrp
            .remove(0)
    }

    #[test]
    fn master_hook_gets_env_and_retries() {
        let i = inst(
            "notify_master = [\"/usr/local/bin/move-ip\", \"--to\", \"me\"]\nnotify_retries = 3\n",
        );
        let p = plan(&i, HookState::Master, 103);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "notify_master");
        assert_eq!(p[0].argv, ["/usr/local/bin/move-ip", "--to", "me"]);
        assert_eq!(p[0].attempts, 4);
        let env: std::collections::HashMap<_, _> = p[0].env.iter().cloned().collect();
        assert_eq!(env["HALO_INSTANCE"], "VI_1");
        assert_eq!(env["HALO_STATE"], "MASTER");
        assert_eq!(env["HALO_VIPS"], "192.0.2.100,192.0.2.101");
        assert_eq!(env["HALO_PRIORITY"], "103");
    }

    #[test]
    fn retries_apply_to_master_only() {
        let i = inst("notify_master = [\"/bin/true\"]\nnotify_backup = [\"/bin/true\"]\nnotify_retries = 2\n");
        assert_eq!(plan(&i, HookState::Backup, 101)[0].attempts, 1);
        assert_eq!(plan(&i, HookState::Master, 101)[0].attempts, 3);
    }

    #[test]
    fn generic_notify_runs_after_the_specific_hook_with_keepalived_arguments() {
        let i = inst("notify_fault = [\"/bin/f\"]\nnotify = [\"/bin/n\", \"-v\"]\n");
        let p = plan(&i, HookState::Fault, 99);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].argv, ["/bin/f"]);
        assert_eq!(p[1].key, "notify");
        assert_eq!(
            p[1].argv,
            ["/bin/n", "-v", "INSTANCE", "VI_1", "FAULT", "99"]
        );
    }

    #[test]
    fn no_hook_for_the_state_means_nothing_to_run() {
        let i = inst("notify_master = [\"/bin/true\"]\n");
        assert!(plan(&i, HookState::Backup, 101).is_empty());
        assert!(plan(&i, HookState::Stop, 101).is_empty());
        assert!(plan(&inst(""), HookState::Master, 101).is_empty());
    }
}
