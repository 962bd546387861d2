//! Sync groups (keepalived's `vrrp_sync_group`): instances that change state
//! together, e.g. a router's outside VIP and the inside gateway address.
//!
//! Pure: the caller reports each member's state as it changes
//! ([`SyncGroup::observe`]) and carries out the [`Order`]s it gets back.
//! Members are held (they hand over with priority 0 and wait as backups of
//! the lowest priority, as `halo vrrp release` does) while the group says
//! so, and freed when the cause is over:
//!
//! - a member in FAULT (its interface is down) holds every other member, so
//!   that the peer takes all of the group's addresses, not just that one;
//! - a member that went from MASTER to BACKUP by itself (a peer with a
//!   higher priority took it over) holds the others until it is master again.
//!
//! A member going BACKUP because the group held it is not a cause, or the
//! group would hold itself for ever. The group's own state, for its notify
//! hooks, is FAULT when a member is, MASTER when all members are, and
//! BACKUP otherwise.

use std::collections::BTreeMap;
use std::fmt;

/// A member's state as its driver publishes it (FAULT: its interface is
/// down).
pub use crate::telemetry::status::VrrpState as Member;

/// The group's state, for its notify hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Backup,
    Master,
    Fault,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupState::Backup => "BACKUP",
            GroupState::Master => "MASTER",
            GroupState::Fault => "FAULT",
        })
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Make `member` hand over and stay backup; `why` is for `halo status`.
    Hold { member: String, why: String },
    /// The cause is over: `member` returns to its own priority.
    Free { member: String },
    /// The group's state changed: run its hook.
    Group { to: GroupState, why: String },
}

#[derive(Debug, Clone)]
pub struct SyncGroup {
    name: String,
    /// In config order (the first cause found is named).
    members: Vec<String>,
    states: BTreeMap<String, Member>,
    /// Members that left MASTER by themselves, with why.
    demoted: BTreeMap<String, String>,
    /// Members held now, with the reason given.
    held: BTreeMap<String, String>,
    state: GroupState,
}

impl SyncGroup {
    /// Members start as INIT, the group as BACKUP.
    pub fn new(name: &str, members: &[String]) -> SyncGroup {
        SyncGroup {
            name: name.to_string(),
            members: members.to_vec(),
            states: members.iter().map(|m| (m.clone(), Member::Init)).collect(),
            demoted: BTreeMap::new(),
            held: BTreeMap::new(),
            state: GroupState::Backup,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Why `member` is held, if it is.
    pub fn held(&self, member: &str) -> Option<&str> {
        self.held.get(member).map(String::as_str)
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    /// `member` is now in `state`: what to do about it (nothing if it is not
    /// a member or nothing changed).
    #[must_use]
    pub fn observe(&mut self, member: &str, state: Member) -> Vec<Order> {
        let Some(prev) = self.states.get(member).copied() else {
            return Vec::new();
        };
        if prev == state {
            return Vec::new();
        }
        self.states.insert(member.to_string(), state);
        match state {
            Member::Backup if prev == Member::Master && !self.held.contains_key(member) => {
                self.demoted.insert(
                    member.to_string(),
                    format!("{member} went from MASTER to BACKUP (a peer took it over)"),
                );
            }
            Member::Master | Member::Fault | Member::Init => {
                self.demoted.remove(member);
            }
            Member::Backup => {}
        }
        self.decide()
    }

    fn decide(&mut self) -> Vec<Order> {
        let faulted = self
            .members
            .iter()
            .find(|m| self.states.get(*m) == Some(&Member::Fault));
        let cause = match faulted {
            Some(m) => Some((m.clone(), format!("{m} is FAULT (its interface is down)"))),
            None => self
                .members
                .iter()
                .find_map(|m| self.demoted.get(m).map(|why| (m.clone(), why.clone()))),
        };
        // Who must be held: every member but the cause itself.
        let want: BTreeMap<String, String> = match &cause {
            Some((who, why)) => self
                .members
                .iter()
                .filter(|m| *m != who && self.states.get(*m) != Some(&Member::Fault))
                .map(|m| {
                    (
                        m.clone(),
                        format!("following sync group {}: {why}", self.name),
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let mut orders = Vec::new();
        for m in &self.members {
            match (self.held.get(m), want.get(m)) {
                (None, Some(why)) => orders.push(Order::Hold {
                    member: m.clone(),
                    why: why.clone(),
                }),
                (Some(old), Some(why)) if old != why => orders.push(Order::Hold {
                    member: m.clone(),
                    why: why.clone(),
                }),
                (Some(_), None) => orders.push(Order::Free { member: m.clone() }),
                _ => {}
            }
        }
        self.held = want;
        let states: Vec<Member> = self.members.iter().map(|m| self.states[m]).collect();
        let to = if states.contains(&Member::Fault) {
            GroupState::Fault
        } else if states.iter().all(|s| *s == Member::Master) {
            GroupState::Master
        } else {
            GroupState::Backup
        };
        if to != self.state {
            self.state = to;
            let why = match (&cause, to) {
                (Some((_, why)), _) => why.clone(),
                (None, GroupState::Master) => "every member is MASTER".to_string(),
                (None, _) => "not every member is MASTER".to_string(),
            };
            orders.push(Order::Group { to, why });
        }
        orders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> SyncGroup {
        SyncGroup::new("G", &["OUT".to_string(), "IN".to_string()])
    }

    fn holds(o: &[Order]) -> Vec<String> {
        o.iter()
            .map(|o| match o {
                Order::Hold { member, .. } => format!("hold {member}"),
                Order::Free { member } => format!("free {member}"),
                Order::Group { to, .. } => format!("group {to}"),
            })
            .collect()
    }

    #[test]
    fn members_elected_on_their_own_need_nothing() {
        let mut g = group();
        assert!(g.observe("OUT", Member::Backup).is_empty());
        assert!(g.observe("IN", Member::Backup).is_empty());
        assert!(g.observe("OUT", Member::Master).is_empty());
        assert_eq!(holds(&g.observe("IN", Member::Master)), ["group MASTER"]);
        assert!(g.observe("nobody", Member::Fault).is_empty());
    }

    #[test]
    fn a_fault_holds_the_others_until_it_is_over() {
        let mut g = group();
        for m in ["OUT", "IN"] {
            let _ = g.observe(m, Member::Backup);
            let _ = g.observe(m, Member::Master);
        }
        // The inside cable is cut: IN is FAULT, OUT must hand over too.
        let o = g.observe("IN", Member::Fault);
        assert_eq!(holds(&o), ["hold OUT", "group FAULT"]);
        assert_eq!(
            g.held("OUT"),
            Some("following sync group G: IN is FAULT (its interface is down)")
        );
        // OUT goes backup because it is held: not a cause of its own.
        assert!(g.observe("OUT", Member::Backup).is_empty());
        // The cable is back: IN starts as backup, OUT is freed.
        let o = g.observe("IN", Member::Backup);
        assert_eq!(holds(&o), ["free OUT", "group BACKUP"]);
        assert_eq!(g.held("OUT"), None);
        // Both win their elections again.
        assert!(g.observe("IN", Member::Master).is_empty());
        assert_eq!(holds(&g.observe("OUT", Member::Master)), ["group MASTER"]);
    }

    #[test]
    fn a_member_taken_over_holds_the_others_until_it_is_master_again() {
        let mut g = group();
        for m in ["OUT", "IN"] {
            let _ = g.observe(m, Member::Backup);
            let _ = g.observe(m, Member::Master);
        }
        let o = g.observe("OUT", Member::Backup);
        assert_eq!(holds(&o), ["hold IN", "group BACKUP"]);
        assert!(g
            .held("IN")
            .unwrap()
            .contains("OUT went from MASTER to BACKUP"));
        assert!(g.observe("IN", Member::Backup).is_empty());
        assert_eq!(holds(&g.observe("OUT", Member::Master)), ["free IN"]);
    }

    #[test]
    fn a_fault_outranks_a_takeover_and_both_faulted_hold_nobody() {
        let mut g = group();
        for m in ["OUT", "IN"] {
            let _ = g.observe(m, Member::Backup);
            let _ = g.observe(m, Member::Master);
        }
        let _ = g.observe("OUT", Member::Backup);
        let o = g.observe("IN", Member::Fault);
        // IN is the cause now: OUT is held for it, IN (down) is let go.
        assert_eq!(holds(&o), ["hold OUT", "free IN", "group FAULT"]);
        assert!(g.held("OUT").unwrap().contains("IN is FAULT"));
        let o = g.observe("OUT", Member::Fault);
        assert_eq!(holds(&o), ["free OUT"]);
    }
}
