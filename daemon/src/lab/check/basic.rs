//! Checks of exercises 1–9 (docs/labs/01..09): the two-LB lab with one VIP.
//! One look at the lab ([`Seen`]: each LB's halo, config, switch port and
//! MAC; each backend; the client's ARP entry for the VIP after a few
//! requests through it) and a pure judge per exercise over it, so every
//! point is unit-tested on made-up states.
//!
//! The goal each judge checks is the state the exercise leads to (or its
//! "Try"), written in docs/labs/NN-*.md under "Check".

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Result;

use super::Point;
use crate::lab::plan::{Node, IFACE, VIP};
use crate::lab::probe;
use crate::lab::running::{self, Running};
use crate::lab::sys;

/// Exercises checked here, with their title.
pub const CHECKS: &[(u8, &str)] = &[
    (1, "round robin: every backend takes its turn"),
    (2, "failover: the master fails, a backup serves"),
    (3, "a backend fails: the LBs stop sending to it"),
    (4, "nopreempt: the preferred LB comes back as backup"),
    (5, "split brain healed: one master, the client follows it"),
    (6, "VRRP on the wire: adverts every 100 ms"),
    (7, "unicast: one master while the switch drops multicast"),
    (8, "a keepalived peer in the virtual router"),
    (9, "balancing in the kernel: [l4] with direct routing"),
];

/// Requests through the VIP per backend: enough for round robin to show.
const ROUNDS: usize = 3;

/// One LB as seen from outside and through its control socket.
#[derive(Debug, Clone)]
pub struct Lb {
    pub n: u8,
    pub addr: Ipv4Addr,
    /// keepalived runs its VRRP (`up --peer keepalived`).
    pub keepalived: bool,
    /// Its switch port: "up", "CUT", "isolated", "no-mcast", "missing".
    pub port: String,
    pub mac: Option<String>,
    /// The kernel's view: the VIP is on its interface.
    pub holds_vip: bool,
    /// The configured priority (halo.toml or keepalived.conf).
    pub priority: Option<u8>,
    /// halo.toml's first VRRP instance, if it has one and loads.
    pub conf: Option<Conf>,
    /// What its halo says; `None` if it does not answer.
    pub halo: Option<Halo>,
}

/// The settings of a halo.toml's first `[vrrp.*]` the exercises change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    pub preempt: bool,
    pub advert_ms: u32,
    pub unicast_peers: Vec<String>,
}

/// What an LB's halo reports.
#[derive(Debug, Clone, Default)]
pub struct Halo {
    /// Its first VRRP instance (none: a proxy-only halo beside keepalived).
    pub vrrp: Option<Vrrp>,
    /// Its first proxy service's servers: name and health.
    pub servers: Vec<(String, bool)>,
    /// Its `[l4]` services: forwarding mode and whether it is up.
    pub l4: Vec<(String, bool)>,
}

#[derive(Debug, Clone, Default)]
pub struct Vrrp {
    pub state: String,
    pub priority: u8,
    /// The master's address as a backup knows it.
    pub master: Option<String>,
    /// Routers heard: address, advert interval (ms), seconds since.
    pub peers: Vec<(String, u32, f64)>,
    /// State changes since start (INIT -> BACKUP is one).
    pub transitions: u64,
}

/// One backend.
#[derive(Debug, Clone, Default)]
pub struct Web {
    pub n: u8,
    pub mac: Option<String>,
    /// Its `/health` answers the client with 200.
    pub up: bool,
    pub vip_on_lo: bool,
    /// Effective for eth0: the larger of `all` and `eth0`, as the kernel
    /// takes it.
    pub arp_ignore: Option<u8>,
    pub arp_announce: Option<u8>,
}

/// What a check looked at.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub lbs: Vec<Lb>,
    pub webs: Vec<Web>,
    /// `GET /` through the VIP from the client: who answered, or why not.
    pub requests: Vec<Result<String, String>>,
    /// The client's ARP entry for the VIP after those requests.
    pub vip_mac: Option<String>,
}

impl Seen {
    fn holders(&self) -> Vec<u8> {
        self.lbs
            .iter()
            .filter(|l| l.holds_vip)
            .map(|l| l.n)
            .collect()
    }

    fn halo_master(&self) -> Option<&Lb> {
        self.lbs
            .iter()
            .find(|l| vrrp_of(l).is_some_and(|v| v.state == "MASTER"))
    }

    /// The LB the lab prefers: the highest configured priority.
    fn preferred(&self) -> Option<&Lb> {
        self.lbs
            .iter()
            .max_by_key(|l| (l.priority, std::cmp::Reverse(l.n)))
    }

    /// Which node a MAC address belongs to.
    fn owner_of(&self, mac: &str) -> String {
        let lb = self.lbs.iter().find(|l| l.mac.as_deref() == Some(mac));
        let web = self.webs.iter().find(|w| w.mac.as_deref() == Some(mac));
        match (lb, web) {
            (Some(l), _) => format!("lb{}", l.n),
            (_, Some(w)) => format!("web{}", w.n),
            _ => "an unknown machine".into(),
        }
    }
}

fn vrrp_of(l: &Lb) -> Option<&Vrrp> {
    l.halo.as_ref()?.vrrp.as_ref()
}

fn point(ok: bool, text: impl Into<String>) -> Point {
    Point {
        ok,
        text: text.into(),
    }
}

fn names(ns: &[u8], prefix: &str) -> String {
    ns.iter()
        .map(|n| format!("{prefix}{n}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Exercise `n`'s points; `None` if this module has no check for it.
pub fn judge(n: u8, s: &Seen) -> Option<Vec<Point>> {
    Some(match n {
        1 => round_robin(s),
        2 => failover(s),
        3 => backend_failure(s),
        4 => nopreempt(s),
        5 => split_brain(s),
        6 => fast_adverts(s),
        7 => unicast(s),
        8 => keepalived_peer(s),
        9 => l4_dr(s),
        _ => return None,
    })
}

// === points several exercises share ===

fn one_holder(s: &Seen) -> Point {
    let h = s.holders();
    match h.len() {
        0 => point(false, format!("{VIP} is held by nobody")),
        1 => point(true, format!("{VIP} is held by lb{} only", h[0])),
        _ => point(
            false,
            format!("{VIP} is held by {} at once (split brain)", names(&h, "lb")),
        ),
    }
}

fn requests_answered(s: &Seen) -> Point {
    let total = s.requests.len();
    let failed: Vec<&String> = s.requests.iter().filter_map(|r| r.as_ref().err()).collect();
    if total == 0 {
        return point(false, format!("no request was sent to http://{VIP}/"));
    }
    if failed.is_empty() {
        point(
            true,
            format!("{total} requests to http://{VIP}/ all answered"),
        )
    } else {
        point(
            false,
            format!(
                "{} of {total} requests to http://{VIP}/ failed (first: {})",
                failed.len(),
                failed[0]
            ),
        )
    }
}

/// How many requests each backend answered, "web1 3, web2 3".
fn answered_by(s: &Seen) -> Vec<(String, usize)> {
    let mut by: Vec<(String, usize)> = Vec::new();
    for who in s.requests.iter().flatten() {
        match by.iter_mut().find(|(w, _)| w == who) {
            Some((_, c)) => *c += 1,
            None => by.push((who.clone(), 1)),
        }
    }
    by.sort();
    by
}

fn every_backend_answered(s: &Seen) -> Point {
    let by = answered_by(s);
    let counts = by
        .iter()
        .map(|(w, c)| format!("{w} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let silent: Vec<String> = s
        .webs
        .iter()
        .map(|w| format!("web{}", w.n))
        .filter(|w| !by.iter().any(|(b, _)| b == w))
        .collect();
    if silent.is_empty() && !s.webs.is_empty() {
        point(true, format!("every backend answered: {counts}"))
    } else {
        point(
            false,
            format!(
                "{} never answered ({}): is it up? `halo lab status`",
                if silent.is_empty() {
                    "no backend".into()
                } else {
                    silent.join(", ")
                },
                if counts.is_empty() {
                    "no answers".into()
                } else {
                    counts
                }
            ),
        )
    }
}

/// The client's ARP entry for the VIP points at LB `lb`.
fn client_follows(s: &Seen, lb: &Lb) -> Point {
    match (&s.vip_mac, &lb.mac) {
        (Some(m), Some(want)) if m == want => point(
            true,
            format!("the client sends {VIP}'s traffic to lb{} ({m})", lb.n),
        ),
        (Some(m), _) => point(
            false,
            format!(
                "the client sends {VIP}'s traffic to {} ({m}), not to lb{}",
                s.owner_of(m),
                lb.n
            ),
        ),
        (None, _) => point(
            false,
            format!("the client has no ARP entry for {VIP} (nobody answered its ARP)"),
        ),
    }
}

// === the exercises ===

/// 1: the VIP on one LB and the requests spread over every backend.
fn round_robin(s: &Seen) -> Vec<Point> {
    vec![
        one_holder(s),
        requests_answered(s),
        every_backend_answered(s),
    ]
}

/// 2: the preferred master is out (killed, stopped, or its priority
/// lowered by its tracked proxy) and another LB is master, holds the VIP,
/// gets the client's traffic and serves it.
fn failover(s: &Seen) -> Vec<Point> {
    let Some(first) = s.preferred() else {
        return vec![point(false, "the lab has no LB")];
    };
    let n = first.n;
    let out = match (&first.halo, vrrp_of(first)) {
        (None, _) => point(true, format!("lb{n}, the first master, is out: its halo is not running")),
        (Some(_), Some(v)) if v.state != "MASTER" => point(
            true,
            format!(
                "lb{n}, the first master, is out: {} at priority {}{}",
                v.state,
                v.priority,
                first.priority.map_or(String::new(), |p| format!(" of {p}"))
            ),
        ),
        _ => point(
            false,
            format!(
                "lb{n} is still the master: break it (`halo lab kill lb{n}`, `halo lab stop lb{n}`, \
                 or make its backends unreachable, docs/labs/02-failover.md)"
            ),
        ),
    };
    let mut pts = vec![out];
    match s.halo_master().filter(|l| l.n != n) {
        Some(m) if m.holds_vip => {
            pts.push(point(
                true,
                format!("lb{} took over: MASTER, holds {VIP}", m.n),
            ));
            pts.push(client_follows(s, m));
        }
        Some(m) => {
            pts.push(point(
                false,
                format!("lb{} says MASTER but does not hold {VIP}", m.n),
            ));
            pts.push(client_follows(s, m));
        }
        None => pts.push(point(
            false,
            "no other LB has taken over (none says MASTER)",
        )),
    }
    pts.push(requests_answered(s));
    pts
}

/// 3: at least one backend down, at least one up; every running LB sees
/// exactly that, and the requests go to the healthy ones only.
fn backend_failure(s: &Seen) -> Vec<Point> {
    let down: Vec<u8> = s.webs.iter().filter(|w| !w.up).map(|w| w.n).collect();
    let up: Vec<u8> = s.webs.iter().filter(|w| w.up).map(|w| w.n).collect();
    let mut pts = vec![match (down.is_empty(), up.is_empty()) {
        (true, _) => point(
            false,
            "every backend is up: stop one (`halo lab stop web2`)",
        ),
        (false, true) => point(
            false,
            "every backend is down: stop only one, the others must serve",
        ),
        (false, false) => point(
            true,
            format!(
                "{} down (its /health does not answer), {} up",
                names(&down, "web"),
                names(&up, "web")
            ),
        ),
    }];
    for l in &s.lbs {
        let Some(h) = l.halo.as_ref().filter(|h| !h.servers.is_empty()) else {
            continue;
        };
        let wrong: Vec<String> = h
            .servers
            .iter()
            .filter(|(name, healthy)| {
                let web_up = s
                    .webs
                    .iter()
                    .any(|w| format!("web{}", w.n) == *name && w.up);
                *healthy != web_up
            })
            .map(|(name, healthy)| format!("{name} {}", if *healthy { "UP" } else { "DOWN" }))
            .collect();
        pts.push(if wrong.is_empty() {
            point(true, format!("lb{} sees each backend as it is", l.n))
        } else {
            point(
                false,
                format!(
                    "lb{} still sees {} (its checks need `fall`/`rise` rounds: wait a few seconds)",
                    l.n,
                    wrong.join(", ")
                ),
            )
        });
    }
    pts.push(requests_answered(s));
    let bad: Vec<String> = answered_by(s)
        .into_iter()
        .filter(|(w, _)| s.webs.iter().any(|x| format!("web{}", x.n) == *w && !x.up))
        .map(|(w, c)| format!("{w} {c}"))
        .collect();
    pts.push(if bad.is_empty() {
        point(true, "no request went to a down backend")
    } else {
        point(
            false,
            format!("requests went to a down backend: {}", bad.join(", ")),
        )
    });
    pts
}

/// 4: the preferred LB has `nopreempt`, runs, and stays BACKUP while
/// another LB keeps the VIP.
fn nopreempt(s: &Seen) -> Vec<Point> {
    let Some(first) = s.preferred() else {
        return vec![point(false, "the lab has no LB")];
    };
    let n = first.n;
    let mut pts = vec![match &first.conf {
        Some(c) if !c.preempt => point(true, format!("lb{n} (the highest priority) has nopreempt = true")),
        _ => point(
            false,
            format!("lb{n}'s halo.toml has no `nopreempt = true` under [vrrp.VI_1] (then `halo lab reload lb{n}`)"),
        ),
    }];
    pts.push(match vrrp_of(first) {
        None => point(
            false,
            format!("lb{n}'s halo is not running: `halo lab start lb{n}`"),
        ),
        Some(v) if v.state == "BACKUP" => point(
            true,
            format!("lb{n} came back as BACKUP despite its higher priority"),
        ),
        Some(v) => point(
            false,
            format!(
                "lb{n} is {}: with nopreempt applied, stop it and start it again \
                 (`halo lab stop lb{n}; halo lab start lb{n}`)",
                v.state
            ),
        ),
    });
    pts.push(match s.halo_master().filter(|l| l.n != n) {
        Some(m) if m.holds_vip => point(true, format!("lb{} keeps the VIP as MASTER", m.n)),
        _ => point(false, format!("no other LB is MASTER holding {VIP}")),
    });
    pts.push(one_holder(s));
    pts.push(requests_answered(s));
    pts
}

/// 5: after `cut lbs` and `heal lbs`: the LBs hear each other, a backup
/// has been master and stepped down, one LB holds the VIP and the
/// client's ARP entry points at it.
fn split_brain(s: &Seen) -> Vec<Point> {
    let mut pts = Vec::new();
    let cut: Vec<String> = s
        .lbs
        .iter()
        .filter(|l| l.port != "up")
        .map(|l| format!("lb{} ({})", l.n, l.port))
        .collect();
    pts.push(if cut.is_empty() {
        point(true, "the LBs hear each other (every switch port up)")
    } else {
        point(
            false,
            format!("not healed: {}: `halo lab heal lbs`", cut.join(", ")),
        )
    });
    let stepped: Vec<u8> = s
        .lbs
        .iter()
        .filter(|l| vrrp_of(l).is_some_and(|v| v.state == "BACKUP" && v.transitions >= 3))
        .map(|l| l.n)
        .collect();
    pts.push(if stepped.is_empty() {
        point(
            false,
            "no backup has been master since it started: partition the LBs first (`halo lab cut lbs`), then heal",
        )
    } else {
        point(
            true,
            format!("{} was MASTER during the split and stepped down", names(&stepped, "lb")),
        )
    });
    pts.push(one_holder(s));
    if let [h] = s.holders()[..] {
        if let Some(l) = s.lbs.iter().find(|l| l.n == h) {
            pts.push(client_follows(s, l));
        }
    }
    pts.push(requests_answered(s));
    pts
}

/// 6 (its "Try"): `advert_interval = "100ms"` in every LB, and the backups
/// hear the master every 100 ms.
fn fast_adverts(s: &Seen) -> Vec<Point> {
    let mut pts = Vec::new();
    for l in s.lbs.iter().filter(|l| !l.keepalived) {
        pts.push(match &l.conf {
            Some(c) if c.advert_ms == 100 => point(true, format!("lb{}'s halo.toml: advert_interval = 100 ms", l.n)),
            Some(c) => point(
                false,
                format!(
                    "lb{}'s halo.toml: advert_interval = {} ms; set \"100ms\" and `halo lab reload lb{}`",
                    l.n, c.advert_ms, l.n
                ),
            ),
            None => point(false, format!("lb{}'s halo.toml has no [vrrp] instance", l.n)),
        });
    }
    pts.push(one_holder(s));
    let master = s.halo_master();
    for l in &s.lbs {
        let Some(v) = vrrp_of(l).filter(|v| v.state == "BACKUP") else {
            continue;
        };
        let Some(m) = master else { continue };
        let addr = m.addr.to_string();
        pts.push(match v.peers.iter().find(|(a, _, _)| *a == addr) {
            Some((_, 100, _)) => point(true, format!("lb{} hears lb{} every 100 ms", l.n, m.n)),
            Some((_, ms, _)) => point(
                false,
                format!(
                    "lb{} hears lb{} every {ms} ms (is lb{}'s change reloaded?)",
                    l.n, m.n, m.n
                ),
            ),
            None => point(
                false,
                format!("lb{} does not hear lb{}'s adverts", l.n, m.n),
            ),
        });
    }
    pts
}

/// 7: the switch drops multicast to the LBs and they still elect one
/// master, over unicast.
fn unicast(s: &Seen) -> Vec<Point> {
    let mut pts = Vec::new();
    let mcast: Vec<String> = s
        .lbs
        .iter()
        .filter(|l| l.port != "no-mcast")
        .map(|l| format!("lb{} ({})", l.n, l.port))
        .collect();
    pts.push(if mcast.is_empty() {
        point(true, "the switch drops multicast to every LB")
    } else {
        point(
            false,
            format!(
                "the network still carries multicast to {}: `halo lab cut multicast` first",
                mcast.join(", ")
            ),
        )
    });
    for l in s.lbs.iter().filter(|l| !l.keepalived) {
        let others: Vec<String> = s
            .lbs
            .iter()
            .filter(|o| o.n != l.n)
            .map(|o| o.addr.to_string())
            .collect();
        let have = l
            .conf
            .as_ref()
            .map(|c| c.unicast_peers.clone())
            .unwrap_or_default();
        let missing: Vec<&String> = others.iter().filter(|a| !have.contains(a)).collect();
        pts.push(if missing.is_empty() {
            point(
                true,
                format!("lb{} sends its adverts to {}", l.n, others.join(", ")),
            )
        } else {
            point(
                false,
                format!(
                    "lb{}'s unicast_peers lacks {} (then `halo lab reload lb{}`)",
                    l.n,
                    missing
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    l.n
                ),
            )
        });
    }
    pts.push(one_holder(s));
    if let Some(m) = s.halo_master() {
        let addr = m.addr.to_string();
        for l in &s.lbs {
            if let Some(v) = vrrp_of(l).filter(|v| v.state == "BACKUP") {
                pts.push(if v.master.as_deref() == Some(addr.as_str()) {
                    point(true, format!("lb{} is BACKUP to lb{}", l.n, m.n))
                } else {
                    point(
                        false,
                        format!("lb{} is BACKUP but does not hear lb{}", l.n, m.n),
                    )
                });
            }
        }
    }
    pts.push(requests_answered(s));
    pts
}

/// 8: halo and keepalived in one virtual router: one holder, halo's view
/// agrees with keepalived's, and pages are served through the VIP.
fn keepalived_peer(s: &Seen) -> Vec<Point> {
    let Some(k) = s.lbs.iter().find(|l| l.keepalived) else {
        return vec![point(
            false,
            "no LB runs keepalived: `halo lab down; halo lab up --peer keepalived`",
        )];
    };
    let mut pts = vec![point(true, format!("lb{} runs keepalived for VRRP", k.n))];
    pts.push(one_holder(s));
    let kaddr = k.addr.to_string();
    for l in s.lbs.iter().filter(|l| !l.keepalived) {
        pts.push(match vrrp_of(l) {
            None => point(
                false,
                format!(
                    "lb{}'s halo does not answer: `halo lab start lb{}`",
                    l.n, l.n
                ),
            ),
            Some(v) if v.state == "MASTER" && l.holds_vip => point(
                true,
                format!(
                    "lb{}'s halo is MASTER; keepalived on lb{} backs it up",
                    l.n, k.n
                ),
            ),
            Some(v) if v.state == "BACKUP" && v.master.as_deref() == Some(kaddr.as_str()) => point(
                true,
                format!(
                    "lb{}'s halo is BACKUP to keepalived on lb{} ({kaddr})",
                    l.n, k.n
                ),
            ),
            Some(v) => point(
                false,
                format!(
                    "lb{}'s halo is {} (master: {}): it and keepalived do not agree",
                    l.n,
                    v.state,
                    v.master.as_deref().unwrap_or("none")
                ),
            ),
        });
    }
    pts.push(requests_answered(s));
    pts
}

/// 9: `up --l4 dr`: the master's halo balances in the kernel in DR mode,
/// every backend holds the VIP on lo without answering ARP for it, the
/// client's ARP entry is the master's, and every backend answers.
fn l4_dr(s: &Seen) -> Vec<Point> {
    let mut pts = Vec::new();
    let master = s.halo_master();
    pts.push(match master {
        None => point(false, "no LB's halo is MASTER"),
        Some(m) => {
            let l4 = m.halo.as_ref().map(|h| h.l4.clone()).unwrap_or_default();
            match l4.iter().find(|(f, _)| f == "dr") {
                Some((_, true)) => point(true, format!("lb{} balances in the kernel: [l4] dr, UP", m.n)),
                Some((_, false)) => point(false, format!("lb{}'s [l4] dr service is down (no healthy backend?)", m.n)),
                None => point(
                    false,
                    format!("lb{} runs no [l4] service with forward = \"dr\": `halo lab down; halo lab up --l4 dr`", m.n),
                ),
            }
        }
    });
    for w in &s.webs {
        pts.push(if w.vip_on_lo {
            point(true, format!("web{} holds {VIP} on lo", w.n))
        } else {
            point(
                false,
                format!(
                    "web{} does not hold {VIP} on lo: it drops the VIP's packets",
                    w.n
                ),
            )
        });
        let (ig, an) = (w.arp_ignore.unwrap_or(0), w.arp_announce.unwrap_or(0));
        pts.push(if ig >= 1 && an >= 2 {
            point(true, format!("web{} never answers ARP for it (arp_ignore {ig}, arp_announce {an})", w.n))
        } else {
            point(
                false,
                format!(
                    "web{} may answer ARP for {VIP} (arp_ignore {ig}, arp_announce {an}; needs 1 and 2): it can steal the VIP",
                    w.n
                ),
            )
        });
    }
    if let Some(m) = master {
        pts.push(client_follows(s, m));
    }
    pts.push(requests_answered(s));
    pts.push(every_backend_answered(s));
    pts
}

// === looking at the lab ===

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> Option<String> {
    let out = sys::ip(&["-n", ns, "-o", "link", "show", "dev", dev]).ok()?;
    let mut w = out.split_whitespace();
    w.find(|&t| t == "link/ether")?;
    w.next().map(str::to_string)
}

/// The MAC the client's ARP cache has for `ip`, if it has one.
fn neighbour(ns: &str, ip: Ipv4Addr) -> Option<String> {
    let out = sys::ip(&["-n", ns, "neigh", "show", &ip.to_string()]).ok()?;
    let mut w = out.split_whitespace();
    w.find(|&t| t == "lladdr")?;
    w.next().map(str::to_string)
}

/// `net.ipv4.conf.{all,eth0}.KEY` inside `ns`, the larger one (what the
/// kernel applies). /proc/sys/net is the reading thread's namespace.
fn arp_sysctl(ns: &str, key: &'static str) -> Option<u8> {
    sys::in_netns(ns, move || {
        ["all", IFACE]
            .iter()
            .filter_map(|d| {
                fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{d}/{key}"))
                    .ok()?
                    .trim()
                    .parse::<u8>()
                    .ok()
            })
            .max()
    })
    .ok()
    .flatten()
}

fn conf_of(lab: &Running, lb: u8) -> Option<Conf> {
    if lab.is_keepalived(lb) {
        return None;
    }
    let cfg = crate::config::load(&lab.node_dir(Node::Lb(lb)).join("halo.toml")).ok()?;
    let v = cfg.vrrp.first()?;
    Some(Conf {
        preempt: v.preempt,
        advert_ms: u32::from(v.advert_interval.centis()) * 10,
        unicast_peers: v.unicast_peers.iter().map(|a| a.to_string()).collect(),
    })
}

fn halo_of(lab: &Running, lb: u8) -> Option<Halo> {
    let snap = running::snapshot(lab, lb)?;
    let vrrp = snap.vrrp.first().map(|v| Vrrp {
        state: v.state.to_string(),
        priority: v.effective_priority,
        master: v.master.clone(),
        peers: v
            .peers
            .iter()
            .map(|p| (p.address.clone(), p.interval_ms, p.secs_ago))
            .collect(),
        transitions: v.transitions,
    });
    let servers = snap
        .proxy
        .first()
        .map(|p| {
            p.servers
                .iter()
                .map(|s| (s.name.clone(), s.healthy))
                .collect()
        })
        .unwrap_or_default();
    let l4 = snap.l4.iter().map(|l| (l.forward.clone(), l.up)).collect();
    Some(Halo { vrrp, servers, l4 })
}

/// Look at the lab: every LB and backend, then requests through the VIP
/// from the client, then the client's ARP entry for the VIP.
pub(super) fn observe(lab: &Running) -> Result<Seen> {
    let lbs = lab
        .lbs
        .iter()
        .map(|&n| {
            let node = Node::Lb(n);
            let ns = lab.ns(node);
            Lb {
                n,
                addr: node.addr(),
                keepalived: lab.is_keepalived(n),
                port: running::port_state(lab, node),
                mac: mac_of(&ns, IFACE),
                holds_vip: sys::ipv4_addrs(&ns, IFACE).contains(&VIP),
                priority: running::configured_priority(lab, n),
                conf: conf_of(lab, n),
                halo: halo_of(lab, n),
            }
        })
        .collect();
    let health = running::backend_health(lab)?;
    let webs = lab
        .webs
        .iter()
        .map(|&n| {
            let ns = lab.ns(Node::Web(n));
            Web {
                n,
                mac: mac_of(&ns, IFACE),
                up: health
                    .iter()
                    .any(|(w, r)| *w == n && r.as_ref().is_ok_and(|r| r.status == 200)),
                vip_on_lo: sys::ipv4_addrs(&ns, "lo").contains(&VIP),
                arp_ignore: arp_sysctl(&ns, "arp_ignore"),
                arp_announce: arp_sysctl(&ns, "arp_announce"),
            }
        })
        .collect();
    let count = ROUNDS * lab.webs.len().max(1);
    let requests = lab.in_client(move || {
        (0..count)
            .map(
                |_| match probe::get(SocketAddr::from((VIP, 80)), "/", Duration::from_secs(1)) {
                    Ok(r) if r.status == 200 => Ok(r.server.unwrap_or_else(|| "?".into())),
                    Ok(r) => Err(format!("status {}", r.status)),
                    Err(e) => Err(e.to_string()),
                },
            )
            .collect()
    })?;
    let vip_mac = neighbour(&lab.ns(Node::Client), VIP);
    Ok(Seen {
        lbs,
        webs,
        requests,
        vip_mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC1: &str = "02:00:00:00:00:11";
    const MAC2: &str = "02:00:00:00:00:12";

    fn vrrp(state: &str, priority: u8, master: Option<&str>) -> Vrrp {
        Vrrp {
            state: state.into(),
            priority,
            master: master.map(str::to_string),
            peers: Vec::new(),
            transitions: 1,
        }
    }

    fn servers(up: &[bool]) -> Vec<(String, bool)> {
        up.iter()
            .enumerate()
            .map(|(i, &h)| (format!("web{}", i + 1), h))
            .collect()
    }

    /// A fresh `halo lab up`: lb1 (110) MASTER, lb2 (100) BACKUP, three
    /// backends up, nine requests round robin, the client on lb1's MAC.
    fn fresh() -> Seen {
        let lb = |n: u8, prio: u8, mac: &str, v: Vrrp, holds: bool| Lb {
            n,
            addr: Node::Lb(n).addr(),
            keepalived: false,
            port: "up".into(),
            mac: Some(mac.into()),
            holds_vip: holds,
            priority: Some(prio),
            conf: Some(Conf {
                preempt: true,
                advert_ms: 1000,
                unicast_peers: Vec::new(),
            }),
            halo: Some(Halo {
                vrrp: Some(v),
                servers: servers(&[true, true, true]),
                l4: Vec::new(),
            }),
        };
        let mut b = vrrp("BACKUP", 100, Some("192.0.2.11"));
        b.peers = vec![("192.0.2.11".into(), 1000, 0.3)];
        Seen {
            lbs: vec![
                lb(1, 110, MAC1, vrrp("MASTER", 110, None), true),
                lb(2, 100, MAC2, b, false),
            ],
            webs: (1..=3)
                .map(|n| Web {
                    n,
                    mac: Some(format!("02:00:00:00:00:2{n}")),
                    up: true,
                    vip_on_lo: false,
                    arp_ignore: Some(0),
                    arp_announce: Some(0),
                })
                .collect(),
            requests: (0..9).map(|i| Ok(format!("web{}", i % 3 + 1))).collect(),
            vip_mac: Some(MAC1.into()),
        }
    }

    fn failed(n: u8, s: &Seen) -> Vec<String> {
        judge(n, s)
            .unwrap()
            .into_iter()
            .filter(|p| !p.ok)
            .map(|p| p.text)
            .collect()
    }

    fn passes(n: u8, s: &Seen) {
        let pts = judge(n, s).unwrap();
        assert!(pts.iter().all(|p| p.ok), "{pts:#?}");
    }

    fn fails_with(n: u8, s: &Seen, start: &str) {
        let f = failed(n, s);
        assert!(
            f.iter().any(|t| t.starts_with(start)),
            "no {start:?} in {f:#?}"
        );
    }

    #[test]
    fn every_exercise_1_to_9_is_judged_and_listed() {
        for n in 1..=9 {
            assert!(judge(n, &Seen::default()).is_some());
            assert!(CHECKS.iter().any(|(k, _)| *k == n));
        }
        assert!(judge(10, &Seen::default()).is_none());
    }

    #[test]
    fn round_robin_on_a_fresh_lab_and_with_a_backend_stopped() {
        passes(1, &fresh());
        let mut s = fresh();
        s.webs[1].up = false;
        s.requests = (0..9)
            .map(|i| Ok(format!("web{}", [1, 3][i % 2])))
            .collect();
        fails_with(1, &s, "web2 never answered (web1 5, web3 4)");
        s.requests[0] = Err("connect: refused".into());
        fails_with(
            1,
            &s,
            "1 of 9 requests to http://192.0.2.100/ failed (first: connect: refused)",
        );
    }

    #[test]
    fn failover_solved_by_a_kill_a_stop_or_a_lowered_priority() {
        fails_with(2, &fresh(), "lb1 is still the master: break it");
        // kill: lb1's halo is gone, its VIP left behind (stale); lb2 took
        // over and the client follows its gratuitous ARP.
        let mut s = fresh();
        s.lbs[0].halo = None;
        s.lbs[1].halo.as_mut().unwrap().vrrp = Some(vrrp("MASTER", 100, None));
        s.lbs[1].holds_vip = true;
        s.vip_mac = Some(MAC2.into());
        passes(2, &s);
        // ... but the client still talking to lb1 is not served by lb2.
        s.vip_mac = Some(MAC1.into());
        fails_with(2, &s, "the client sends 192.0.2.100's traffic to lb1");
        // The proxy failed: lb1 BACKUP at 60 of 110.
        let mut s = fresh();
        s.lbs[0].halo.as_mut().unwrap().vrrp = Some(vrrp("BACKUP", 60, Some("192.0.2.12")));
        s.lbs[0].holds_vip = false;
        s.lbs[1].halo.as_mut().unwrap().vrrp = Some(vrrp("MASTER", 100, None));
        s.lbs[1].holds_vip = true;
        s.vip_mac = Some(MAC2.into());
        let pts = judge(2, &s).unwrap();
        assert!(
            pts[0].ok && pts[0].text.contains("BACKUP at priority 60 of 110"),
            "{pts:#?}"
        );
        passes(2, &s);
        // Nobody took over.
        let mut s = fresh();
        s.lbs[0].halo = None;
        fails_with(2, &s, "no other LB has taken over");
    }

    #[test]
    fn backend_failure_needs_one_down_seen_down_and_avoided() {
        fails_with(3, &fresh(), "every backend is up: stop one");
        let mut s = fresh();
        s.webs[1].up = false;
        // The LBs have not noticed yet.
        fails_with(3, &s, "lb1 still sees web2 UP");
        for l in &mut s.lbs {
            l.halo.as_mut().unwrap().servers = servers(&[true, false, true]);
        }
        fails_with(3, &s, "requests went to a down backend: web2 3");
        s.requests = (0..9)
            .map(|i| Ok(format!("web{}", [1, 3][i % 2])))
            .collect();
        passes(3, &s);
        for w in &mut s.webs {
            w.up = false;
        }
        fails_with(3, &s, "every backend is down");
    }

    #[test]
    fn nopreempt_needs_the_setting_and_lb1_back_as_backup() {
        let s = fresh();
        fails_with(4, &s, "lb1's halo.toml has no `nopreempt = true`");
        fails_with(4, &s, "lb1 is MASTER: with nopreempt applied, stop it");
        let mut s = fresh();
        s.lbs[0].conf.as_mut().unwrap().preempt = false;
        s.lbs[0].halo.as_mut().unwrap().vrrp = Some(vrrp("BACKUP", 110, Some("192.0.2.12")));
        s.lbs[0].holds_vip = false;
        s.lbs[1].halo.as_mut().unwrap().vrrp = Some(vrrp("MASTER", 100, None));
        s.lbs[1].holds_vip = true;
        passes(4, &s);
        s.lbs[0].halo = None;
        fails_with(4, &s, "lb1's halo is not running");
    }

    #[test]
    fn split_brain_during_the_cut_and_after_the_heal() {
        fails_with(5, &fresh(), "no backup has been master since it started");
        let mut s = fresh();
        for l in &mut s.lbs {
            l.port = "isolated".into();
            l.holds_vip = true;
            l.halo.as_mut().unwrap().vrrp = Some(vrrp("MASTER", 110, None));
        }
        s.vip_mac = Some(MAC2.into());
        fails_with(5, &s, "not healed: lb1 (isolated), lb2 (isolated)");
        fails_with(
            5,
            &s,
            "192.0.2.100 is held by lb1 + lb2 at once (split brain)",
        );
        // Healed: lb2 stepped down (INIT->BACKUP->MASTER->BACKUP), the
        // client's ARP back on lb1.
        let mut s = fresh();
        s.lbs[1]
            .halo
            .as_mut()
            .unwrap()
            .vrrp
            .as_mut()
            .unwrap()
            .transitions = 3;
        passes(5, &s);
        s.vip_mac = Some(MAC2.into());
        fails_with(5, &s, "the client sends 192.0.2.100's traffic to lb2");
    }

    #[test]
    fn fast_adverts_in_both_configs_and_on_the_wire() {
        fails_with(
            6,
            &fresh(),
            "lb1's halo.toml: advert_interval = 1000 ms; set \"100ms\"",
        );
        let mut s = fresh();
        for l in &mut s.lbs {
            l.conf.as_mut().unwrap().advert_ms = 100;
        }
        // Edited, not yet reloaded on lb1: lb2 still hears 1 s adverts.
        fails_with(6, &s, "lb2 hears lb1 every 1000 ms");
        s.lbs[1].halo.as_mut().unwrap().vrrp.as_mut().unwrap().peers =
            vec![("192.0.2.11".into(), 100, 0.05)];
        passes(6, &s);
    }

    #[test]
    fn unicast_needs_the_cut_the_peers_and_one_master() {
        fails_with(
            7,
            &fresh(),
            "the network still carries multicast to lb1 (up), lb2 (up)",
        );
        let mut s = fresh();
        for l in &mut s.lbs {
            l.port = "no-mcast".into();
            l.holds_vip = true;
            l.halo.as_mut().unwrap().vrrp = Some(vrrp("MASTER", 110, None));
        }
        fails_with(7, &s, "lb1's unicast_peers lacks 192.0.2.12");
        fails_with(7, &s, "192.0.2.100 is held by lb1 + lb2 at once");
        let mut s = fresh();
        for l in &mut s.lbs {
            l.port = "no-mcast".into();
        }
        s.lbs[0].conf.as_mut().unwrap().unicast_peers = vec!["192.0.2.12".into()];
        s.lbs[1].conf.as_mut().unwrap().unicast_peers = vec!["192.0.2.11".into()];
        passes(7, &s);
    }

    #[test]
    fn keepalived_peer_agreeing_and_not() {
        fails_with(8, &fresh(), "no LB runs keepalived");
        let mut s = fresh();
        s.lbs[1].keepalived = true;
        s.lbs[1].conf = None;
        s.lbs[1].halo.as_mut().unwrap().vrrp = None;
        passes(8, &s);
        // lb1 stopped: keepalived holds the VIP, requests 503 (exercise 8's
        // "what keepalived does not know").
        s.lbs[0].halo = None;
        s.lbs[0].holds_vip = false;
        s.lbs[1].holds_vip = true;
        s.requests = (0..9).map(|_| Err("status 503".into())).collect();
        fails_with(8, &s, "lb1's halo does not answer");
        fails_with(
            8,
            &s,
            "9 of 9 requests to http://192.0.2.100/ failed (first: status 503)",
        );
        // halo BACKUP to keepalived, serving.
        s.lbs[0].halo = fresh().lbs[0].halo.clone();
        s.lbs[0].halo.as_mut().unwrap().vrrp = Some(vrrp("BACKUP", 110, Some("192.0.2.12")));
        s.requests = fresh().requests;
        passes(8, &s);
    }

    #[test]
    fn l4_dr_needs_the_service_the_backends_set_up_and_arp_on_the_lb() {
        fails_with(
            9,
            &fresh(),
            "lb1 runs no [l4] service with forward = \"dr\"",
        );
        let mut s = fresh();
        s.lbs[0].halo.as_mut().unwrap().l4 = vec![("dr".into(), true)];
        for w in &mut s.webs {
            w.vip_on_lo = true;
            w.arp_ignore = Some(1);
            w.arp_announce = Some(2);
        }
        passes(9, &s);
        // The exercise's "Try": arp_ignore=0 on web1, which then answers
        // the client's ARP for the VIP.
        s.webs[0].arp_ignore = Some(0);
        s.vip_mac = s.webs[0].mac.clone();
        fails_with(9, &s, "web1 may answer ARP for 192.0.2.100 (arp_ignore 0");
        fails_with(9, &s, "the client sends 192.0.2.100's traffic to web1");
    }
}
