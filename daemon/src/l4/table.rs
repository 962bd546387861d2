//! The `halo_l4` tables as data: from the `[l4.*]` services and what is
//! known about their servers now (up or down, MAC addresses for direct
//! routing), the one nftables JSON transaction that makes the kernel's
//! tables exactly that. Pure: no I/O, no clock; `l4::nft` runs it.
//!
//! Layout (after Zevenet's nftlb), one table per family, both `halo_l4`:
//!
//! ```text
//! table inet halo_l4                    forward = "nat"
//!   chain prerouting, output  (nat)     ip daddr VIP tcp dport P jump svc.NAME
//!   chain postrouting         (nat)     original VIP:P, dnat'ed -> masquerade (snat)
//!   chain svc.NAME                      counter
//!                                       ip saddr @p4.NAME.SRV goto srv.NAME.SRV   (persistence)
//!                                       numgen inc mod T vmap { 0: goto srv.NAME.A, ... }
//!   chain srv.NAME.SRV                  update @p4.NAME.SRV { ip saddr } counter dnat to SRV
//! table netdev halo_l4                  forward = "dr"
//!   chain ingress.IF  (ingress on IF)   ip daddr VIP tcp dport P jump svc.NAME
//!   chain svc.NAME                      counter
//!                                       ip saddr . tcp sport @f4.NAME.SRV goto srv.NAME.SRV
//!                                       numgen / jhash vmap { ... }
//!   chain srv.NAME.SRV                  update @f4... counter ether saddr set IFMAC
//!                                       ether daddr set SRVMAC fwd to IF
//! ```
//!
//! NAT needs no flow table of its own: conntrack keeps every established
//! flow on its server, whatever the table says later. Direct routing sees
//! packets before conntrack, so each server has a dynamic set of the flows
//! it holds (client address and port; with `persistence`, the client
//! address alone, kept that long after its last packet).
//!
//! A reconcile never deletes the table: it flushes the rules, deletes and
//! re-adds the chains, and keeps the sets and the named counters (one per
//! service and server chain, named as the chain), so flows, persistence
//! and counts survive health changes and reloads. A down server's set is
//! flushed so that its clients are scheduled again.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{L4Forward, L4Protocol, L4Scheduler, L4Service};

/// The one table name halo owns (in the `inet` and `netdev` families).
pub const TABLE: &str = "halo_l4";

/// How long an idle direct-routed flow stays on its server without
/// persistence. The ingress hook sees no connection end (no conntrack), so
/// a closed flow stays in its set this long: shorter than LVS's 15 min for
/// established TCP, so the sets hold the flows of a busy service.
const FLOW_TIMEOUT_TCP: Duration = Duration::from_secs(300);
const FLOW_TIMEOUT_UDP: Duration = Duration::from_secs(120);

/// Elements per set (nft's default is 65535). A full set refuses new
/// flows: at 300 s per flow this is ~870 new connections per second.
pub const SET_SIZE: u32 = 262_144;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// What the driver knows about one service now.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState<'a> {
    pub svc: &'a L4Service,
    /// Per server (config order): may take new flows (healthy, enabled,
    /// and for DR its MAC is known).
    pub usable: Vec<bool>,
    /// Direct routing: the servers' MACs (config order) and the sorry
    /// server's; ignored for NAT.
    pub macs: Vec<Option<Mac>>,
    pub sorry_mac: Option<Mac>,
    /// Direct routing: the MAC of `interface`, the frames' new source.
    pub if_mac: Option<Mac>,
}

/// The objects a table holds now (from `nft -j list table`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: Vec<String>,
    pub sets: Vec<String>,
    pub counters: Vec<String>,
}

/// What is in the kernel now: `None` for a family without the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub inet: Option<Existing>,
    pub netdev: Option<Existing>,
}

pub fn service_chain(svc: &str) -> String {
    format!("svc.{svc}")
}

pub fn server_chain(svc: &str, srv: &str) -> String {
    format!("srv.{svc}.{srv}")
}

pub fn sorry_chain(svc: &str) -> String {
    format!("sorry.{svc}")
}

/// The set of a server's clients (persistence) or flows (DR). Its name
/// carries everything its type and timeout depend on, so a changed set is
/// a new name: the old one is deleted, never redefined in place.
fn server_set(s: &L4Service, srv: &str) -> Option<SetDef> {
    let fam = if s.address.is_ipv4() { 4 } else { 6 };
    let (kind, timeout, with_port) = match (&s.forward, s.persistence) {
        (_, Some(p)) => ("p", p, false),
        (L4Forward::Dr { .. }, None) => (
            "f",
            match s.protocol {
                L4Protocol::Tcp => FLOW_TIMEOUT_TCP,
                L4Protocol::Udp => FLOW_TIMEOUT_UDP,
            },
            true,
        ),
        (L4Forward::Nat { .. }, None) => return None,
    };
    Some(SetDef {
        name: format!("{kind}{fam}.{}.{srv}.{}", s.name, timeout.as_secs()),
        v6: fam == 6,
        with_port,
        timeout,
        proto: s.protocol,
    })
}

struct SetDef {
    name: String,
    v6: bool,
    with_port: bool,
    timeout: Duration,
    proto: L4Protocol,
}

impl SetDef {
    fn type_json(&self) -> Value {
        let addr = if self.v6 { "ipv6_addr" } else { "ipv4_addr" };
        if self.with_port {
            json!([addr, "inet_service"])
        } else {
            json!(addr)
        }
    }

    /// The packet's key for this set: client address (and port).
    fn key(&self) -> Value {
        let saddr = payload(ip_proto(self.v6), "saddr");
        if self.with_port {
            json!({"concat": [saddr, payload(self.proto.as_str(), "sport")]})
        } else {
            saddr
        }
    }
}

fn ip_proto(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn mac_text(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The order in which a service's usable servers take new flows: smooth
/// weighted round robin over (index, weight), reduced by the weights'
/// greatest common divisor. Entry k of the result is the server behind
/// `numgen`/`jhash` value k.
pub fn schedule(weights: &[(usize, u32)]) -> Vec<usize> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights.iter().fold(0, |g, &(_, w)| gcd(g, w)).max(1);
    let w: Vec<(usize, i64)> = weights
        .iter()
        .map(|&(i, w)| (i, i64::from(w / g)))
        .collect();
    let total: i64 = w.iter().map(|(_, w)| w).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (k, (_, wk)) in w.iter().enumerate() {
            current[k] += wk;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total;
        out.push(w[best].0);
    }
    out
}

/// One transaction for both tables: `{"nftables": [...]}`.
pub fn transaction(states: &[ServiceState<'_>], current: &Current) -> Value {
    let mut cmds = Vec::new();
    let nat: Vec<&ServiceState> = states
        .iter()
        .filter(|s| matches!(s.svc.forward, L4Forward::Nat { .. }))
        .collect();
    let dr: Vec<&ServiceState> = states
        .iter()
        .filter(|s| matches!(s.svc.forward, L4Forward::Dr { .. }))
        .collect();
    family(&mut cmds, "inet", &nat, current.inet.as_ref());
    family(&mut cmds, "netdev", &dr, current.netdev.as_ref());
    json!({ "nftables": cmds })
}

/// Deletes only halo's tables (for stop).
pub fn teardown(current: &Current) -> Value {
    let mut cmds = Vec::new();
    if current.inet.is_some() {
        cmds.push(json!({"delete": {"table": {"family": "inet", "name": TABLE}}}));
    }
    if current.netdev.is_some() {
        cmds.push(json!({"delete": {"table": {"family": "netdev", "name": TABLE}}}));
    }
    json!({ "nftables": cmds })
}

/// Commands for one family's table.
fn family(cmds: &mut Vec<Value>, fam: &str, states: &[&ServiceState], existing: Option<&Existing>) {
    let table = json!({"family": fam, "name": TABLE});
    if states.is_empty() {
        if existing.is_some() {
            cmds.push(json!({"delete": {"table": table}}));
        }
        return;
    }
    let obj = |mut v: Value| {
        v["family"] = json!(fam);
        v["table"] = json!(TABLE);
        v
    };
    cmds.push(json!({"add": {"table": table}}));
    let empty = Existing::default();
    let existing = existing.unwrap_or(&empty);
    if !existing.chains.is_empty() {
        cmds.push(json!({"flush": {"table": table}}));
    }
    for c in &existing.chains {
        cmds.push(json!({"delete": {"chain": obj(json!({"name": c}))}}));
    }

    // Sets: keep the wanted ones (and their elements), delete the rest.
    let mut wanted = Vec::new();
    for st in states {
        for srv in &st.svc.servers {
            if let Some(set) = server_set(st.svc, &srv.name) {
                wanted.push(set);
            }
        }
    }
    for name in &existing.sets {
        if !wanted.iter().any(|s| &s.name == name) {
            cmds.push(json!({"delete": {"set": obj(json!({"name": name}))}}));
        }
    }
    // Only new sets are added: the kernel marks a set that rules update as
    // `dynamic`, which nft 1.0.6's JSON cannot say, and re-adding it
    // without the flag fails with "File exists". The name carries the
    // definition, so an existing set is already the wanted one.
    for set in wanted.iter().filter(|s| !existing.sets.contains(&s.name)) {
        cmds.push(json!({"add": {"set": obj(json!({
            "name": set.name,
            "type": set.type_json(),
            "flags": ["timeout"],
            "size": SET_SIZE,
            "timeout": set.timeout.as_secs(),
        }))}}));
    }

    let mut rules: Vec<(String, Vec<Value>)> = Vec::new();
    let mut chains: Vec<Value> = Vec::new();
    let mut counters: Vec<String> = Vec::new();
    if fam == "inet" {
        for (name, hook, prio) in [
            ("prerouting", "prerouting", -100),
            ("output", "output", -100),
            ("postrouting", "postrouting", 100),
        ] {
            chains.push(obj(json!({"name": name, "type": "nat", "hook": hook,
                "prio": prio, "policy": "accept"})));
        }
    } else {
        let mut ifs: Vec<&str> = Vec::new();
        for st in states {
            if let L4Forward::Dr { interface } = &st.svc.forward {
                if !ifs.contains(&interface.as_str()) {
                    ifs.push(interface);
                }
            }
        }
        for i in ifs {
            chains.push(obj(
                json!({"name": format!("ingress.{i}"), "type": "filter",
                "hook": "ingress", "dev": i, "prio": 0, "policy": "accept"}),
            ));
        }
    }

    for st in states {
        service(st, &mut chains, &mut rules, &mut counters, &obj, cmds);
    }
    for name in &existing.counters {
        if !counters.contains(name) {
            cmds.push(json!({"delete": {"counter": obj(json!({"name": name}))}}));
        }
    }
    // `add` keeps an existing counter's values.
    for name in &counters {
        cmds.push(json!({"add": {"counter": obj(json!({"name": name}))}}));
    }
    for c in chains {
        cmds.push(json!({"add": {"chain": c}}));
    }
    for (chain, expr) in rules {
        cmds.push(json!({"add": {"rule": obj(json!({"chain": chain, "expr": expr}))}}));
    }
}

/// The chains and rules of one service.
fn service(
    st: &ServiceState,
    chains: &mut Vec<Value>,
    rules: &mut Vec<(String, Vec<Value>)>,
    counters: &mut Vec<String>,
    obj: &dyn Fn(Value) -> Value,
    cmds: &mut Vec<Value>,
) {
    let s = st.svc;
    let v6 = s.address.is_ipv6();
    let ip = ip_proto(v6);
    let proto = s.protocol.as_str();
    let svc_chain = service_chain(&s.name);
    let vip = eq(payload(ip, "daddr"), json!(s.address.to_string()));
    let port = eq(payload(proto, "dport"), json!(s.port));
    let dispatch = vec![vip, port, json!({"jump": {"target": svc_chain}})];
    match &s.forward {
        L4Forward::Nat { snat } => {
            rules.push(("prerouting".into(), dispatch.clone()));
            rules.push(("output".into(), dispatch));
            if *snat {
                rules.push((
                    "postrouting".into(),
                    vec![
                        eq(json!({"meta": {"key": "l4proto"}}), json!(proto)),
                        eq(
                            json!({"ct": {"key": format!("{ip} daddr"), "dir": "original"}}),
                            json!(s.address.to_string()),
                        ),
                        eq(
                            json!({"ct": {"key": "proto-dst", "dir": "original"}}),
                            json!(s.port),
                        ),
                        json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                        json!({"masquerade": null}),
                    ],
                ));
            }
        }
        L4Forward::Dr { interface } => {
            let mut d = vec![eq(json!({"meta": {"key": "protocol"}}), json!(ip))];
            d.extend(dispatch);
            rules.push((format!("ingress.{interface}"), d));
        }
    }
    chains.push(obj(json!({"name": svc_chain})));
    counters.push(svc_chain.clone());
    rules.push((svc_chain.clone(), vec![json!({"counter": svc_chain})]));

    // Each server's chain: how a flow given to it is sent.
    let mut usable = Vec::new();
    for (i, srv) in s.servers.iter().enumerate() {
        let chain = server_chain(&s.name, &srv.name);
        let set = server_set(s, &srv.name);
        let up = st.usable.get(i).copied().unwrap_or(false);
        let mac = st.macs.get(i).copied().flatten();
        chains.push(obj(json!({"name": chain})));
        let mut expr = Vec::new();
        if let Some(set) = &set {
            if up {
                rules.push((
                    svc_chain.clone(),
                    vec![
                        json!({"match": {"op": "==", "left": set.key(), "right": format!("@{}", set.name)}}),
                        json!({"goto": {"target": chain}}),
                    ],
                ));
            } else {
                // Its clients are scheduled again, not stuck on a dead server.
                cmds.push(json!({"flush": {"set": obj(json!({"name": set.name}))}}));
            }
            expr.push(json!({"set": {"op": "update", "elem": set.key(), "set": format!("@{}", set.name)}}));
        }
        counters.push(chain.clone());
        expr.push(json!({"counter": chain}));
        match send(s, srv.address, mac, st.if_mac) {
            Some(mut to) => {
                expr.append(&mut to);
                if up {
                    usable.push((i, srv.weight));
                }
            }
            // DR without a MAC: nothing can be sent there yet.
            None => expr = vec![json!({"counter": chain}), json!({"drop": null})],
        }
        rules.push((chain, expr));
    }

    let weighted = |u: &[(usize, u32)]| -> Vec<(usize, u32)> {
        match s.scheduler {
            L4Scheduler::RoundRobin => u.iter().map(|&(i, _)| (i, 1)).collect(),
            _ => u.to_vec(),
        }
    };
    let order = schedule(&weighted(&usable));
    if !order.is_empty() {
        let key = match s.scheduler {
            L4Scheduler::SourceHash => json!({"jhash": {
                "mod": order.len(),
                "seed": 0x68616c6f,
                "expr": payload(ip, "saddr"),
            }}),
            _ => json!({"numgen": {"mode": "inc", "mod": order.len()}}),
        };
        let data: Vec<Value> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                json!([k, {"goto": {"target": server_chain(&s.name, &s.servers[i].name)}}])
            })
            .collect();
        rules.push((
            svc_chain.clone(),
            vec![json!({"vmap": {"key": key, "data": {"set": data}}})],
        ));
    } else if let Some(to) = s.sorry.and_then(|a| send(s, a, st.sorry_mac, st.if_mac)) {
        let chain = sorry_chain(&s.name);
        chains.push(obj(json!({"name": chain})));
        rules.push((svc_chain.clone(), vec![json!({"goto": {"target": chain}})]));
        counters.push(chain.clone());
        let mut expr = vec![json!({"counter": chain})];
        expr.extend(to);
        rules.push((chain, expr));
    } else {
        // No server: refuse rather than let the VIP's own stack answer.
        rules.push((svc_chain, vec![json!({"drop": null})]));
    }
}

/// The statements that send a packet to `to`; `None` when direct routing
/// does not know the MACs yet.
fn send(
    s: &L4Service,
    to: SocketAddr,
    mac: Option<Mac>,
    if_mac: Option<Mac>,
) -> Option<Vec<Value>> {
    match &s.forward {
        L4Forward::Nat { .. } => {
            let fam = match to.ip() {
                IpAddr::V4(_) => "ip",
                IpAddr::V6(_) => "ip6",
            };
            // nft accepts a port mapping only after a protocol match.
            Some(vec![
                eq(
                    json!({"meta": {"key": "l4proto"}}),
                    json!(s.protocol.as_str()),
                ),
                json!({"dnat": {
                    "family": fam,
                    "addr": to.ip().to_string(),
                    "port": to.port(),
                }}),
            ])
        }
        L4Forward::Dr { interface } => {
            let (mac, if_mac) = (mac?, if_mac?);
            Some(vec![
                json!({"mangle": {"key": payload("ether", "saddr"), "value": mac_text(&if_mac)}}),
                json!({"mangle": {"key": payload("ether", "daddr"), "value": mac_text(&mac)}}),
                json!({"fwd": {"dev": interface}}),
            ])
        }
    }
}

// === reading `nft -j list table` ===

/// Packet and byte counts of a named counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The chains, sets and counters of a listed table, with the counters'
/// values (each named as the chain that counts into it).
pub fn parse_listing(listing: &Value) -> (Existing, Vec<(String, Counter)>) {
    let mut ex = Existing::default();
    let mut values = Vec::new();
    let items = listing["nftables"].as_array().cloned().unwrap_or_default();
    for item in &items {
        let name = |kind: &str| item.get(kind)?["name"].as_str().map(str::to_string);
        if let Some(n) = name("chain") {
            ex.chains.push(n);
        } else if let Some(n) = name("set") {
            ex.sets.push(n);
        } else if let Some(n) = name("counter") {
            let c = &item["counter"];
            values.push((
                n.clone(),
                Counter {
                    packets: c["packets"].as_u64().unwrap_or(0),
                    bytes: c["bytes"].as_u64().unwrap_or(0),
                },
            ));
            ex.counters.push(n);
        }
    }
    (ex, values)
}

#[cfg(test)]
mod tests;
