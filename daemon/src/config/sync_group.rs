//! `[vrrp_sync_group.NAME]` -> [`SyncGroup`]: which instances change state
//! together, and the group's notify hooks (keepalived's `vrrp_sync_group`).

use toml::Spanned;

use super::diag::Diag;
use super::raw::RawSyncGroup;
use super::scripts::{argv, user};
use super::validate::{list, required_list};
use super::{SyncGroup, VrrpInstance};

/// Every group in file order. An instance belongs to one group at most
/// (two groups ruling one instance could order it both ways).
pub fn groups(
    d: &mut Diag,
    raw: Vec<(Spanned<String>, RawSyncGroup)>,
    vrrp: &[VrrpInstance],
) -> Vec<SyncGroup> {
    let mut out: Vec<SyncGroup> = Vec::new();
    for (name, r) in raw {
        let here = format!("[vrrp_sync_group.{}]", name.get_ref());
        let table = name.span();
        let mut instances: Vec<String> = Vec::new();
        if let Some((at, items)) = required_list(d, "instances", r.instances, &table, &here) {
            if items.is_empty() {
                d.error(
                    &at,
                    "`instances` is empty: name the [vrrp.*] instances that change state together",
                );
            }
            for (iat, inst) in items {
                if !vrrp.iter().any(|v| v.name == inst) {
                    d.error(&iat, format!("`instances`: there is no [vrrp.{inst}]"));
                } else if instances.contains(&inst) {
                    d.error(&iat, format!("`instances`: {inst} is listed twice"));
                } else if let Some(g) = out.iter().find(|g| g.instances.contains(&inst)) {
                    d.error(
                        &iat,
                        format!("`instances`: {inst} is already in [vrrp_sync_group.{}]; an instance follows one group", g.name),
                    );
                } else {
                    instances.push(inst);
                }
            }
        }
        let mut hook =
            |key: &str, f| list(d, key, f).and_then(|(at, items)| argv(d, key, at, items));
        let notify_master = hook("notify_master", r.notify_master);
        let notify_backup = hook("notify_backup", r.notify_backup);
        let notify_fault = hook("notify_fault", r.notify_fault);
        let notify = hook("notify", r.notify);
        let script_user = user(d, "script_user", r.script_user);
        out.push(SyncGroup {
            name: name.get_ref().clone(),
            instances,
            notify_master,
            notify_backup,
            notify_fault,
            notify,
            script_user,
        });
    }
    out
}
