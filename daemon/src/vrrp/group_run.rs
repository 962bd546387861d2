//! Runs one sync group: reads its members' states from the status hub,
//! feeds them to the pure [`SyncGroup`], and carries out its orders by
//! sending each member a [`Control::Follow`] and running the group's hooks.
//!
//! The members publish their state on every turn of their loops; this task
//! looks every 100 ms (a driver: it only moves states and time).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::driver::Control;
use super::sync_group::{GroupState, Order, SyncGroup};
use crate::config::{self, VrrpInstance};
use crate::hooks::{HookState, Hooks};
use crate::telemetry::status::StatusHub;

const LOOK_EVERY: Duration = Duration::from_millis(100);
/// A group hook still running after this is killed, as an instance's.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The group's hooks, run by the same runner as an instance's (as the
/// group's script_user, with the group's name where an instance's goes).
fn hooks(group: &config::SyncGroup, template: &VrrpInstance) -> Option<Hooks> {
    let mut inst = template.clone();
    inst.name = group.name.clone();
    inst.hooks = config::Hooks {
        master: group.notify_master.clone(),
        backup: group.notify_backup.clone(),
        fault: group.notify_fault.clone(),
        stop: None,
        notify: group.notify.clone(),
        user: group.script_user.clone(),
        timeout: HOOK_TIMEOUT,
        retries: 0,
    };
    match Hooks::start(&inst) {
        Ok(h) => h,
        Err(e) => {
            warn!("sync group {}: hooks not run: {e}", group.name);
            None
        }
    }
}

/// Start the group. `members` are the instances' control channels; members
/// that are not running are left out by the caller.
pub fn spawn(
    group: config::SyncGroup,
    members: Vec<(String, mpsc::Sender<Control>)>,
    template: VrrpInstance,
    hub: Arc<StatusHub>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut g = SyncGroup::new(&group.name, &group.instances);
        let hooks = hooks(&group, &template);
        // A group started again (reload) frees what an earlier one held.
        for (_, c) in &members {
            let _ = c.send(Control::Follow(None)).await;
        }
        let mut tick = tokio::time::interval(LOOK_EVERY);
        loop {
            tick.tick().await;
            for name in &group.instances {
                let Some(state) = hub.vrrp_state(name) else {
                    continue;
                };
                for order in g.observe(name, state) {
                    match order {
                        Order::Hold { member, why } => {
                            if let Some((_, c)) = members.iter().find(|(m, _)| *m == member) {
                                let _ = c.send(Control::Follow(Some(why))).await;
                            }
                        }
                        Order::Free { member } => {
                            if let Some((_, c)) = members.iter().find(|(m, _)| *m == member) {
                                let _ = c.send(Control::Follow(None)).await;
                            }
                        }
                        Order::Group { to, why } => {
                            info!("sync group {} -> {to}: {why}", g.name());
                            if let Some(h) = &hooks {
                                h.fire(
                                    match to {
                                        GroupState::Master => HookState::Master,
                                        GroupState::Backup => HookState::Backup,
                                        GroupState::Fault => HookState::Fault,
                                    },
                                    0,
                                );
                            }
                        }
                    }
                }
            }
        }
    })
}
