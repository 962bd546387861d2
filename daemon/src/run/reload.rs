//! A reload as a plan: [`plan`] compares the running config with the new
//! one and lists what must change, one [`Change`] per piece of a
//! subsystem, in the order they are applied.
//!
//! Pure: no I/O, no clock, nothing started. The supervisor applies the
//! changes one by one and stops at the first that fails; what each change
//! does to the running daemon (bind, start a generation, tell an instance)
//! is the supervisor's. A new subsystem adds a variant here and an arm
//! there.
//!
//! The order is the one a failure needs: `[admin]` first (a port it cannot
//! bind leaves everything as it was), then the proxy, l4 and the track
//! scripts (each can fail and leaves its old generation running), then
//! VRRP (stops, in-place updates, then the starts, which wait until every
//! new instance has opened its sockets), and the sync groups last, on the
//! instances as they now run.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Config, VrrpInstance};

/// One step of a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `[admin]` differs: bind the new addresses, close the old, new auth.
    Admin,
    /// The proxy services differ: the workers take the new configuration,
    /// or a new generation starts beside the old one when the listeners
    /// change.
    Proxy,
    /// `[l4.*]` differs. With `keep_board` the same servers are checked the
    /// same way: the board (and what it knows) stays and only the table
    /// changes; else a new board and reconciler replace the old ones.
    L4 { keep_board: bool },
    /// The track scripts differ: all of them restart.
    TrackScripts,
    /// Stop an instance (its VIPs go).
    VrrpStop { name: String, why: StopWhy },
    /// Only priority or tracking changed: the instance takes them in place
    /// and a master keeps its VIPs.
    VrrpUpdate(Box<VrrpInstance>),
    /// Start these instances (new ones, and those stopped to restart).
    VrrpStart(Vec<VrrpInstance>),
    /// Restart the sync groups on the running instances. Every reload does
    /// while there are groups: a restarted member has a new control channel.
    SyncGroups,
    /// `[anycast.*]`: the announcers take the new list and the tracked
    /// boards and scripts, which a proxy, l4 or scripts change may have
    /// replaced; so every reload does while there are addresses, last.
    /// `changed`: the list itself differs (the reload's message says so).
    Anycast { changed: bool },
}

/// Why an instance stops in a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhy {
    /// Gone from the config.
    Removed,
    /// Its interface, VRID, VIPs or timers changed; a `VrrpStart` follows.
    Restart,
}

impl fmt::Display for Change {
    /// What the change touches, for a reload's error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Admin => f.write_str("admin"),
            Change::Proxy => f.write_str("proxy"),
            Change::L4 { .. } => f.write_str("l4"),
            Change::TrackScripts => f.write_str("track scripts"),
            Change::VrrpStop { name, .. } => write!(f, "vrrp {name}"),
            Change::VrrpUpdate(i) => write!(f, "vrrp {}", i.name),
            Change::VrrpStart(list) => {
                let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
                write!(f, "vrrp {}", names.join(", "))
            }
            Change::SyncGroups => f.write_str("sync groups"),
            Change::Anycast { .. } => f.write_str("anycast"),
        }
    }
}

/// What it takes to go from `old` (running) to `new`, in order. Empty when
/// nothing differs (and there are no sync groups).
pub fn plan(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    if new.admin != old.admin {
        out.push(Change::Admin);
    }
    if new.proxy != old.proxy {
        out.push(Change::Proxy);
    }
    if new.l4 != old.l4 {
        out.push(Change::L4 {
            keep_board: crate::l4::same_checks(&old.l4, &new.l4),
        });
    }
    if new.track_scripts != old.track_scripts {
        out.push(Change::TrackScripts);
    }
    vrrp(old, new, &mut out);
    if !old.sync_groups.is_empty() || !new.sync_groups.is_empty() {
        out.push(Change::SyncGroups);
    }
    if !old.anycast.is_empty() || !new.anycast.is_empty() {
        out.push(Change::Anycast {
            changed: new.anycast != old.anycast,
        });
    }
    out
}

/// After `changes[failed]` failed: true when the sync groups must still
/// restart, because a VRRP change made up to it changed their members'
/// channels and a `SyncGroups` was planned.
pub fn groups_follow(changes: &[Change], failed: usize) -> bool {
    let vrrp = changes[..=failed].iter().any(|c| {
        matches!(
            c,
            Change::VrrpStop { .. } | Change::VrrpUpdate(_) | Change::VrrpStart(_)
        )
    });
    vrrp && changes[failed + 1..].contains(&Change::SyncGroups)
}

/// The answer to a reload that stopped at `changes[failed]` with `err`
/// (after [`groups_follow`] was acted on): what runs now.
pub fn failure(changes: &[Change], failed: usize, err: &str) -> String {
    // A start that failed may have started the other new instances.
    let partly = failed > 0 || matches!(changes[failed], Change::VrrpStart(_));
    if !partly {
        return format!("{err} (still running the previous config)");
    }
    let groups = groups_follow(changes, failed);
    let list = |cs: &[Change]| {
        let mut names: Vec<String> = cs
            .iter()
            .filter(|c| !(groups && **c == Change::SyncGroups))
            .map(|c| c.to_string())
            .collect();
        names.dedup();
        names.join(", ")
    };
    let mut what = Vec::new();
    if failed > 0 {
        what.push(format!("applied: {}", list(&changes[..failed])));
    }
    what.push(format!("failed: {}", changes[failed]));
    let rest = list(&changes[failed + 1..]);
    if !rest.is_empty() {
        what.push(format!("not tried: {rest}"));
    }
    format!("reload applied partly: {err} ({})", what.join("; "))
}

/// Removed instances stop first (by name), then each instance of the new
/// config in name order is updated in place or stopped to restart, then
/// the new and restarted ones start together.
fn vrrp(old: &Config, new: &Config, out: &mut Vec<Change>) {
    let old_by_name: BTreeMap<&str, &VrrpInstance> =
        old.vrrp.iter().map(|i| (i.name.as_str(), i)).collect();
    let new_by_name: BTreeMap<&str, &VrrpInstance> =
        new.vrrp.iter().map(|i| (i.name.as_str(), i)).collect();
    for name in old_by_name.keys() {
        if !new_by_name.contains_key(name) {
            out.push(Change::VrrpStop {
                name: name.to_string(),
                why: StopWhy::Removed,
            });
        }
    }
    let mut start = Vec::new();
    for (name, n) in &new_by_name {
        match old_by_name.get(name) {
            None => start.push((*n).clone()),
            Some(o) if o == n => {}
            Some(o) if in_place(o, n) => out.push(Change::VrrpUpdate(Box::new((*n).clone()))),
            Some(_) => {
                out.push(Change::VrrpStop {
                    name: name.to_string(),
                    why: StopWhy::Restart,
                });
                start.push((*n).clone());
            }
        }
    }
    if !start.is_empty() {
        out.push(Change::VrrpStart(start));
    }
}

/// True when only priority and tracking differ: those apply without
/// restarting the instance.
fn in_place(old: &VrrpInstance, new: &VrrpInstance) -> bool {
    let mut o = old.clone();
    o.priority = new.priority;
    o.track = new.track.clone();
    &o == new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn cfg(text: &str) -> Config {
        match parse_str("t.toml", text) {
            Ok(c) => c,
            Err(e) => panic!("expected OK, got:\n{e}"),
        }
    }

    fn vrrp(name: &str, vrid: u8, priority: u8, vip: &str) -> String {
        format!(
            "[vrrp.{name}]\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\nvirtual_ips = [\"{vip}\"]\n"
        )
    }

    fn proxy(weight: u32) -> String {
        format!(
            "[proxy.web]\nbind = [\"192.0.2.1:80\"]\nservers = [\n  {{ name = \"web1\", address = \"192.0.2.21:80\", weight = {weight} }},\n  {{ name = \"web2\", address = \"192.0.2.22:80\" }},\n]\n"
        )
    }

    fn l4(server2: &str, scheduler: &str) -> String {
        format!(
            "[l4.dns]\naddress = \"192.0.2.100\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"{scheduler}\"\nservers = [\n  {{ name = \"ns1\", address = \"192.0.2.21:53\" }},\n  {{ name = \"ns2\", address = \"{server2}\" }},\n]\n"
        )
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let text = format!(
            "{}{}{}[admin]\nbind = [\"127.0.0.1:8404\"]\n",
            vrrp("VI_1", 51, 150, "192.0.2.100/24"),
            proxy(1),
            l4("192.0.2.22:53", "rr")
        );
        assert_eq!(plan(&cfg(&text), &cfg(&text)), vec![]);
    }

    #[test]
    fn each_section_is_its_own_change_in_apply_order() {
        let old = cfg(&format!(
            "{}{}{}",
            vrrp("VI_1", 51, 150, "192.0.2.100/24"),
            proxy(1),
            l4("192.0.2.22:53", "rr")
        ));
        let new = cfg(&format!(
            "{}{}{}[admin]\nbind = [\"127.0.0.1:8404\"]\n[track_script.chk]\ncommand = [\"/bin/true\"]\nweight = -10\n",
            vrrp("VI_1", 51, 100, "192.0.2.100/24"),
            proxy(3),
            l4("192.0.2.22:53", "wrr")
        ));
        let p = plan(&old, &new);
        assert_eq!(
            names(&p),
            ["admin", "proxy", "l4", "track scripts", "vrrp VI_1"]
        );
        assert_eq!(p[2], Change::L4 { keep_board: true });
        assert!(matches!(&p[4], Change::VrrpUpdate(i) if i.priority.get() == 100));
    }

    #[test]
    fn an_l4_server_moved_needs_a_new_board() {
        let old = cfg(&l4("192.0.2.22:53", "rr"));
        let moved = cfg(&l4("192.0.2.23:53", "rr"));
        let rescheduled = cfg(&l4("192.0.2.22:53", "wrr"));
        assert_eq!(plan(&old, &moved), [Change::L4 { keep_board: false }]);
        assert_eq!(plan(&old, &rescheduled), [Change::L4 { keep_board: true }]);
        // Gone altogether: nothing left to check.
        let none = cfg(&proxy(1));
        assert_eq!(
            plan(&old, &none),
            [Change::Proxy, Change::L4 { keep_board: false }]
        );
    }

    #[test]
    fn vrrp_stops_then_updates_in_place_then_starts() {
        let old = cfg(&format!(
            "{}{}{}",
            vrrp("VI_1", 51, 150, "192.0.2.100/24"),
            vrrp("VI_2", 52, 150, "192.0.2.101/24"),
            vrrp("VI_3", 53, 150, "192.0.2.102/24"),
        ));
        // VI_1 gone, VI_2 a new VIP, VI_3 a new priority, VI_0 new.
        let new = cfg(&format!(
            "{}{}{}",
            vrrp("VI_3", 53, 90, "192.0.2.102/24"),
            vrrp("VI_2", 52, 150, "192.0.2.111/24"),
            vrrp("VI_0", 50, 150, "192.0.2.99/24"),
        ));
        let p = plan(&old, &new);
        assert_eq!(
            p[0],
            Change::VrrpStop {
                name: "VI_1".into(),
                why: StopWhy::Removed
            }
        );
        assert_eq!(
            p[1],
            Change::VrrpStop {
                name: "VI_2".into(),
                why: StopWhy::Restart
            }
        );
        assert!(matches!(&p[2], Change::VrrpUpdate(i) if i.name == "VI_3"));
        // The new and the restarted start together, VI_2 with its new VIP.
        let Change::VrrpStart(started) = &p[3] else {
            panic!("{p:?}")
        };
        let started: Vec<_> = started
            .iter()
            .map(|i| (i.name.as_str(), i.virtual_ips[0].to_string()))
            .collect();
        assert_eq!(
            started,
            [
                ("VI_0", "192.0.2.99/24".into()),
                ("VI_2", "192.0.2.111/24".into())
            ]
        );
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn tracking_applies_in_place_but_timers_restart() {
        let old = cfg(&vrrp("VI_1", 51, 150, "192.0.2.100/24"));
        let tracked = cfg(&format!(
            "{}track = [{{ interface = \"eth1\", weight = -20 }}]\n",
            vrrp("VI_1", 51, 150, "192.0.2.100/24")
        ));
        assert!(matches!(&plan(&old, &tracked)[..], [Change::VrrpUpdate(_)]));
        let slower = cfg(&format!(
            "{}advert_interval = \"2s\"\n",
            vrrp("VI_1", 51, 150, "192.0.2.100/24")
        ));
        assert_eq!(
            names(&plan(&old, &slower)),
            ["vrrp VI_1", "vrrp VI_1"],
            "a stop, then a start"
        );
    }

    /// The announcers re-read the tracked boards on every reload (a proxy
    /// change replaces its board), and do so last, after what they track.
    #[test]
    fn anycast_follows_every_reload_while_there_are_addresses() {
        let any = |track: &str| {
            format!(
                "{}[anycast.web]\naddress = \"203.0.113.10/32\"\ntrack = [{{ proxy = \"{track}\" }}]\n",
                proxy(1)
            )
        };
        let same = cfg(&any("web"));
        assert_eq!(plan(&same, &same), [Change::Anycast { changed: false }]);
        let p = plan(&same, &cfg(&any("web").replace("weight = 1", "weight = 2")));
        assert_eq!(p, [Change::Proxy, Change::Anycast { changed: false }]);
        let p = plan(&same, &cfg(&proxy(1)));
        assert_eq!(p, [Change::Anycast { changed: true }]);
        assert_eq!(plan(&cfg(&proxy(1)), &cfg(&proxy(1))), vec![]);
    }

    #[test]
    fn sync_groups_restart_on_every_reload_while_there_are_any() {
        let two = format!(
            "{}{}",
            vrrp("VI_1", 51, 150, "192.0.2.100/24"),
            vrrp("VI_2", 52, 150, "192.0.2.101/24")
        );
        let grouped = cfg(&format!(
            "{two}[vrrp_sync_group.g]\ninstances = [\"VI_1\", \"VI_2\"]\n"
        ));
        assert_eq!(plan(&grouped, &grouped), [Change::SyncGroups]);
        assert_eq!(plan(&grouped, &cfg(&two)), [Change::SyncGroups]);
        assert_eq!(plan(&cfg(&two), &cfg(&two)), []);
    }

    #[test]
    fn a_failure_says_what_runs() {
        let vi = |n: &str| cfg(&vrrp(n, 51, 150, "192.0.2.100/24")).vrrp.remove(0);
        let stop = Change::VrrpStop {
            name: "VI_1".into(),
            why: StopWhy::Restart,
        };
        let start = Change::VrrpStart(vec![vi("VI_1")]);
        // The first change failed: nothing was applied.
        let p = [Change::Admin, Change::Proxy];
        assert_eq!(failure(&p, 0, "E"), "E (still running the previous config)");
        assert!(!groups_follow(&p, 0));
        // Later: what was applied, what failed, what was not tried.
        let p = [
            Change::Proxy,
            Change::TrackScripts,
            stop.clone(),
            start.clone(),
        ];
        assert_eq!(
            failure(&p, 1, "E"),
            "reload applied partly: E (applied: proxy; failed: track scripts; not tried: vrrp VI_1)"
        );
        // A start may have started others, even as the first change; the
        // sync groups restart on what runs, so they are not "not tried".
        let p = [start.clone(), Change::SyncGroups];
        assert!(groups_follow(&p, 0));
        assert_eq!(
            failure(&p, 0, "E"),
            "reload applied partly: E (failed: vrrp VI_1)"
        );
        // Before any VRRP change the groups are left alone.
        let p = [Change::Proxy, stop, start, Change::SyncGroups];
        assert!(!groups_follow(&p, 0));
        assert!(groups_follow(&p, 2));
    }
}
