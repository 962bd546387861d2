//! What a running halo reports about itself: the data behind `halo status`,
//! the control socket's `status` answer, and the admin listener's
//! `/status.json` and `/metrics`.
//!
//! Drivers publish into a [`StatusHub`]; readers take a [`Snapshot`]. The
//! types serialise to JSON and back, so the CLI renders exactly what the
//! daemon sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::health::{AdminState, HealthBoard};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: f64,
    pub config: String,
    pub vrrp: Vec<VrrpStatus>,
    pub proxy: Vec<ServiceView>,
    /// `[l4.*]` services (absent from older daemons' answers).
    #[serde(default)]
    pub l4: Vec<L4View>,
    /// `[anycast.*]` addresses (absent from older daemons' answers).
    #[serde(default)]
    pub anycast: Vec<AnycastView>,
}

/// An `[anycast.NAME]` address: held (so announced by the routing daemon),
/// draining or withdrawn, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnycastView {
    pub name: String,
    /// "203.0.113.10/32".
    pub address: String,
    pub interface: String,
    /// "announced", "draining" or "withdrawn".
    pub state: String,
    /// "every tracked item is up", "track web: no healthy server", ...
    pub reason: String,
    /// `halo anycast withdraw` holds it off until `announce`.
    pub withdrawn_by_hand: bool,
    /// While draining: seconds until the address stops answering.
    pub drain_secs_left: Option<f64>,
    /// Seconds in this state.
    pub state_secs: f64,
}

/// An `[l4.NAME]` service: its servers' health, whether each is in the
/// nftables map, and the table's counters (packets that entered the
/// service and each server's chain: every packet with direct routing, the
/// first packet of each connection with NAT, where conntrack does the rest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct L4View {
    pub name: String,
    /// "192.0.2.100:80/tcp".
    pub address: String,
    /// "nat" or "dr".
    pub forward: String,
    pub scheduler: String,
    /// Some server is healthy (what `track = [{ l4 = ... }]` reads).
    pub up: bool,
    pub packets: u64,
    pub bytes: u64,
    pub servers: Vec<L4ServerView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct L4ServerView {
    pub name: String,
    pub address: String,
    pub weight: u32,
    pub healthy: bool,
    /// Takes new flows: in the nftables map as last applied.
    pub in_map: bool,
    pub last_result: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// Why a VRRP packet was dropped, as `halo status`, the JSON and the
/// metrics' `reason` label name it. In name order, so that a map keyed by
/// it lists the reasons as the strings it replaced did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The advert's authentication did not match (VRRPv2 `auth_type`).
    Auth,
    /// Its advert interval differs from ours.
    Interval,
    /// It could not be decoded.
    Malformed,
    /// Its IP TTL / hop limit was not 255 (it crossed a router).
    Ttl,
    /// Another VRRP version.
    Version,
    /// Its virtual addresses differ from ours.
    VipSet,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Auth,
        DropReason::Interval,
        DropReason::Malformed,
        DropReason::Ttl,
        DropReason::Version,
        DropReason::VipSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Auth => "auth",
            DropReason::Interval => "interval",
            DropReason::Malformed => "malformed",
            DropReason::Ttl => "ttl",
            DropReason::Version => "version",
            DropReason::VipSet => "vip_set",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub state: VrrpState,
    pub base_priority: u8,
    pub effective_priority: u8,
    /// "99 = 101 - 2 (track web: no healthy server)".
    pub priority_reason: String,
    pub tracks: Vec<TrackView>,
    pub vips: Vec<String>,
    /// The master as last seen (ourselves when master).
    pub master: Option<String>,
    pub master_priority: Option<u8>,
    /// Why we are in this state, in one sentence.
    pub explanation: String,
    /// The reason given for the last state change.
    pub last_change: Option<String>,
    pub last_change_secs_ago: Option<f64>,
    pub peers: Vec<PeerView>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub transitions: u64,
    /// Dropped packets by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Set while `halo vrrp release` holds this node back: seconds left,
    /// or -1 for "until reclaimed".
    pub released_secs_left: Option<f64>,
}

/// An instance's state as `halo status`, the JSON and the metrics show
/// it: the RFC states, and FAULT (its interface is down). INIT also
/// covers an instance still waiting for an address to send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    #[default]
    Init,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    pub const ALL: [VrrpState; 4] = [
        VrrpState::Init,
        VrrpState::Backup,
        VrrpState::Master,
        VrrpState::Fault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for VrrpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackView {
    pub what: String,
    pub weight: i16,
    pub down: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    pub address: String,
    pub priority: u8,
    pub interval_ms: u32,
    pub secs_ago: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceView {
    pub name: String,
    pub up: bool,
    pub listeners_ok: bool,
    pub servers: Vec<ServerView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerView {
    pub name: String,
    pub address: String,
    pub healthy: bool,
    /// enabled, drain or disabled.
    pub admin: AdminState,
    pub usable: bool,
    pub checked: bool,
    pub weight: u32,
    pub last_result: Option<String>,
    pub last_check_secs_ago: Option<f64>,
    pub state_secs: f64,
    /// Traffic (`stats`): requests sent to this server, those answered
    /// 5xx, requests in flight, requests per second lately.
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub active: u64,
    #[serde(default)]
    pub rate: f64,
}

/// Where the running pieces publish their state.
pub struct StatusHub {
    started: Instant,
    config: String,
    vrrp: Mutex<BTreeMap<String, VrrpStatus>>,
    board: Mutex<Arc<HealthBoard>>,
    weights: Mutex<BTreeMap<(String, String), u32>>,
    stats: Mutex<Option<Arc<crate::telemetry::stats::ProxyStats>>>,
    l4: Mutex<Option<L4Source>>,
    anycast: Mutex<Vec<AnycastView>>,
}

/// Where the L4 part of a snapshot comes from.
struct L4Source {
    services: Vec<crate::config::L4Service>,
    board: Arc<HealthBoard>,
    report: Arc<Mutex<crate::l4::L4Report>>,
}

impl StatusHub {
    // The hub is the drivers' meeting point, not a protocol: it reads the
    // clock for the uptime and the ages in a snapshot (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    pub fn new(config: String, board: Arc<HealthBoard>) -> Arc<StatusHub> {
        Arc::new(StatusHub {
            started: Instant::now(),
            config,
            vrrp: Mutex::new(BTreeMap::new()),
            board: Mutex::new(board),
            weights: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(None),
            l4: Mutex::new(None),
            anycast: Mutex::new(Vec::new()),
        })
    }

    pub fn publish_vrrp(&self, st: VrrpStatus) {
        self.vrrp.lock().unwrap().insert(st.name.clone(), st);
    }

    /// An instance's state as last published.
    pub fn vrrp_state(&self, name: &str) -> Option<VrrpState> {
        self.vrrp.lock().unwrap().get(name).map(|v| v.state)
    }

    pub fn remove_vrrp(&self, name: &str) {
        self.vrrp.lock().unwrap().remove(name);
    }

    /// After a reload the proxy runs on a new board.
    pub fn set_board(&self, board: Arc<HealthBoard>, services: &[crate::config::ProxyService]) {
        *self.board.lock().unwrap() = board;
        let mut w = self.weights.lock().unwrap();
        w.clear();
        for s in services {
            for srv in &s.servers {
                w.insert((s.name.clone(), srv.name.clone()), srv.weight);
            }
        }
    }

    /// The proxy's traffic counters (set again after a reload).
    pub fn set_stats(&self, stats: Arc<crate::telemetry::stats::ProxyStats>) {
        *self.stats.lock().unwrap() = Some(stats);
    }

    pub fn stats(&self) -> Option<Arc<crate::telemetry::stats::ProxyStats>> {
        self.stats.lock().unwrap().clone()
    }

    /// The `[anycast.*]` addresses as the anycast task last saw them.
    pub fn set_anycast(&self, views: Vec<AnycastView>) {
        *self.anycast.lock().unwrap() = views;
    }

    /// The running `[l4.*]` services (set again after a reload).
    pub fn set_l4(&self, side: &crate::l4::L4Side) {
        *self.l4.lock().unwrap() = Some(L4Source {
            services: side.services.clone(),
            board: side.board.clone(),
            report: side.report.clone(),
        });
    }

    fn l4_views(&self) -> Vec<L4View> {
        let guard = self.l4.lock().unwrap();
        let Some(src) = guard.as_ref() else {
            return Vec::new();
        };
        let report = src.report.lock().unwrap().clone();
        let health = src.board.snapshot();
        src.services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let rep = report.services.get(si);
                let h = health.get(si);
                let forward = match s.forward {
                    crate::config::L4Forward::Nat { .. } => "nat",
                    crate::config::L4Forward::Dr { .. } => "dr",
                };
                let total = rep.map(|r| r.1).unwrap_or_default();
                L4View {
                    name: s.name.clone(),
                    address: format!(
                        "{}/{}",
                        std::net::SocketAddr::new(s.address, s.port),
                        s.protocol.as_str()
                    ),
                    forward: forward.to_string(),
                    scheduler: s.scheduler.as_str().to_string(),
                    up: h.is_some_and(|h| h.up),
                    packets: total.packets,
                    bytes: total.bytes,
                    servers: s
                        .servers
                        .iter()
                        .enumerate()
                        .map(|(vi, v)| {
                            let hv = h.and_then(|h| h.servers.get(vi));
                            let (in_map, c) =
                                rep.and_then(|r| r.0.get(vi).copied()).unwrap_or_default();
                            L4ServerView {
                                name: v.name.clone(),
                                address: v.address.to_string(),
                                weight: v.weight,
                                healthy: hv.is_some_and(|x| x.healthy),
                                in_map,
                                last_result: hv.and_then(|x| x.last_result.clone()),
                                packets: c.packets,
                                bytes: c.bytes,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub fn board(&self) -> Arc<HealthBoard> {
        self.board.lock().unwrap().clone()
    }

    #[allow(clippy::disallowed_methods)]
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let weights = self.weights.lock().unwrap().clone();
        let stats = self.stats();
        let proxy = self
            .board()
            .snapshot()
            .into_iter()
            .map(|s| ServiceView {
                servers: s
                    .servers
                    .iter()
                    .map(|v| ServerView {
                        name: v.name.clone(),
                        address: v.address.to_string(),
                        healthy: v.healthy,
                        admin: v.admin,
                        usable: v.usable,
                        checked: v.checked,
                        weight: weights
                            .get(&(s.name.clone(), v.name.clone()))
                            .copied()
                            .unwrap_or(1),
                        last_result: v.last_result.clone(),
                        last_check_secs_ago: v
                            .last_at
                            .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                        state_secs: now.saturating_duration_since(v.since).as_secs_f64(),
                        ..traffic(stats.as_deref(), now, &s.name, &v.name)
                    })
                    .collect(),
                name: s.name,
                up: s.up,
                listeners_ok: s.listeners_ok,
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now.duration_since(self.started).as_secs_f64(),
            config: self.config.clone(),
            vrrp: self.vrrp.lock().unwrap().values().cloned().collect(),
            proxy,
            l4: self.l4_views(),
            anycast: self.anycast.lock().unwrap().clone(),
        }
    }
}

/// A ServerView carrying only the traffic fields, for `..` in `snapshot`.
fn traffic(
    stats: Option<&crate::telemetry::stats::ProxyStats>,
    now: Instant,
    service: &str,
    server: &str,
) -> ServerView {
    let t = stats
        .and_then(|st| st.server(service, server))
        .unwrap_or_default();
    ServerView {
        name: String::new(),
        address: String::new(),
        healthy: false,
        admin: AdminState::default(),
        usable: false,
        checked: false,
        weight: 0,
        last_result: None,
        last_check_secs_ago: None,
        state_secs: 0.0,
        requests: t.requests(),
        errors: t.errors(),
        active: t.active,
        rate: stats.map_or(0.0, |st| st.rate(now, service, server, t.requests())),
    }
}

fn ago(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s ago")
    } else if secs < 3600.0 {
        format!("{:.0}m ago", secs / 60.0)
    } else {
        format!("{:.1}h ago", secs / 3600.0)
    }
}

/// The human view of a snapshot for `halo status`.
pub fn render(s: &Snapshot) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "halo {} (pid {}, up {:.0}s, config {})",
        s.version, s.pid, s.uptime_secs, s.config
    );
    for v in &s.vrrp {
        let _ = writeln!(
            o,
            "\nvrrp {}: {} on {} vrid {} v{}  priority {}",
            v.name, v.state, v.interface, v.vrid, v.version, v.priority_reason
        );
        let _ = writeln!(o, "  why:     {}", v.explanation);
        if v.vips.is_empty() {
            // An election for its hooks only (seed 000's floating IP moved
            // through a provider's API by notify_master).
            let _ = writeln!(
                o,
                "  vips:    none: this instance holds no address; its notify hooks act on the election"
            );
        } else {
            let _ = writeln!(o, "  vips:    {}", v.vips.join(", "));
        }
        if let Some(m) = &v.master {
            let _ = writeln!(
                o,
                "  master:  {m}{}",
                v.master_priority
                    .map(|p| format!(" (priority {p})"))
                    .unwrap_or_default()
            );
        }
        for t in &v.tracks {
            let _ = writeln!(
                o,
                "  track:   {} weight {} {}",
                t.what,
                t.weight,
                if t.down { "DOWN" } else { "up" }
            );
        }
        for p in &v.peers {
            let _ = writeln!(
                o,
                "  peer:    {} priority {} interval {}ms, last advert {}",
                p.address,
                p.priority,
                p.interval_ms,
                ago(p.secs_ago)
            );
        }
        if let (Some(c), Some(a)) = (&v.last_change, v.last_change_secs_ago) {
            let _ = writeln!(o, "  changed: {} ({c})", ago(a));
        }
        match v.released_secs_left {
            Some(r) if r < 0.0 => {
                let _ = writeln!(o, "  released: staying backup until `halo vrrp reclaim`");
            }
            Some(r) => {
                let _ = writeln!(o, "  released: staying backup for {r:.0}s more");
            }
            None => {}
        }
        let drops: u64 = v.drops.values().sum();
        let _ = writeln!(
            o,
            "  adverts: {} sent, {} received, {} dropped{}",
            v.adverts_sent,
            v.adverts_received,
            drops,
            if drops > 0 {
                format!(
                    " ({})",
                    v.drops
                        .iter()
                        .map(|(k, n)| format!("{k}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
    }
    for p in &s.proxy {
        let _ = writeln!(
            o,
            "\nproxy {}: {}{}",
            p.name,
            if p.up { "UP" } else { "DOWN" },
            if p.listeners_ok {
                ""
            } else {
                " (listener failed)"
            }
        );
        let _ = writeln!(
            o,
            "  {:<12} {:<22} {:<5} {:<9} {:>6} {:>6} {:>7} {:>9} {:>6}  last check",
            "server", "address", "state", "admin", "weight", "active", "req/s", "requests", "5xx"
        );
        for v in &p.servers {
            let state = if !v.healthy { "DOWN" } else { "UP" };
            let last = match (&v.last_result, v.last_check_secs_ago) {
                (Some(r), Some(a)) => format!("{r}, {}", ago(a)),
                _ if !v.checked => "not checked".to_string(),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                o,
                "  {:<12} {:<22} {:<5} {:<9} {:>6} {:>6} {:>7.1} {:>9} {:>6}  {last}",
                v.name, v.address, state, v.admin, v.weight, v.active, v.rate, v.requests, v.errors
            );
        }
    }
    for l in &s.l4 {
        let _ = writeln!(
            o,
            "\nl4 {}: {} {} {} {}  {} packets, {} bytes",
            l.name,
            if l.up { "UP" } else { "DOWN" },
            l.address,
            l.forward,
            l.scheduler,
            l.packets,
            l.bytes
        );
        let _ = writeln!(
            o,
            "  {:<12} {:<22} {:<5} {:<6} {:>6} {:>10} {:>12}  last check",
            "server", "address", "state", "in map", "weight", "packets", "bytes"
        );
        for v in &l.servers {
            let _ = writeln!(
                o,
                "  {:<12} {:<22} {:<5} {:<6} {:>6} {:>10} {:>12}  {}",
                v.name,
                v.address,
                if v.healthy { "UP" } else { "DOWN" },
                if v.in_map { "yes" } else { "no" },
                v.weight,
                v.packets,
                v.bytes,
                v.last_result.as_deref().unwrap_or("-")
            );
        }
    }
    for a in &s.anycast {
        let drain = a
            .drain_secs_left
            .map(|d| format!(", still answering for {d:.1}s"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "\nanycast {}: {} {} on {} for {:.0}s{drain}\n  why:     {}",
            a.name,
            a.address,
            a.state.to_uppercase(),
            a.interface,
            a.state_secs,
            a.reason
        );
        if a.withdrawn_by_hand {
            let _ = writeln!(
                o,
                "  held off by `halo anycast withdraw` until `halo anycast announce {}`",
                a.name
            );
        }
    }
    o
}

#[cfg(test)]
mod no_address_tests {
    use super::*;

    #[test]
    fn an_instance_without_addresses_says_so() {
        let s = Snapshot {
            version: "0".into(),
            pid: 1,
            uptime_secs: 1.0,
            config: "halo.toml".into(),
            vrrp: vec![VrrpStatus {
                name: "VI_1".into(),
                state: VrrpState::Master,
                ..VrrpStatus::default()
            }],
            proxy: vec![],
            l4: vec![],
            anycast: vec![],
        };
        assert!(
            render(&s).contains("vips:    none: this instance holds no address"),
            "{}",
            render(&s)
        );
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    /// The JSON and `halo status` keep the state names they had as strings.
    #[test]
    fn vrrp_state_names_in_json_and_text() {
        for (st, name) in VrrpState::ALL
            .into_iter()
            .zip(["INIT", "BACKUP", "MASTER", "FAULT"])
        {
            assert_eq!(st.to_string(), name);
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<VrrpState>(&json).unwrap(), st);
        }
        let v = VrrpStatus {
            state: VrrpState::Fault,
            ..VrrpStatus::default()
        };
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""state":"FAULT""#), "{json}");
        assert!(serde_json::from_str::<VrrpState>("\"fault\"").is_err());
    }

    /// The drop reasons keep the names (and the order) they had as strings.
    #[test]
    fn drop_reason_names_and_order() {
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for r in DropReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<DropReason>(&json).unwrap(), r);
        }
        let v = VrrpStatus {
            drops: [(DropReason::VipSet, 2), (DropReason::Ttl, 1)].into(),
            ..VrrpStatus::default()
        };
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""drops":{"ttl":1,"vip_set":2}"#), "{json}");
        let back: VrrpStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back.drops, v.drops);
    }
}

#[cfg(test)]
mod anycast_tests {
    use super::*;

    #[test]
    fn anycast_addresses_show_their_state_and_why() {
        let s = Snapshot {
            version: "0".into(),
            pid: 1,
            uptime_secs: 1.0,
            config: "halo.toml".into(),
            vrrp: vec![],
            proxy: vec![],
            l4: vec![],
            anycast: vec![AnycastView {
                name: "web".into(),
                address: "203.0.113.10/32".into(),
                interface: "lo".into(),
                state: "draining".into(),
                reason: "withdrawn by `halo anycast withdraw`".into(),
                withdrawn_by_hand: true,
                drain_secs_left: Some(4.2),
                state_secs: 0.8,
            }],
        };
        let text = render(&s);
        assert!(
            text.contains(
                "anycast web: 203.0.113.10/32 DRAINING on lo for 1s, still answering for 4.2s"
            ),
            "{text}"
        );
        assert!(text.contains("until `halo anycast announce web`"), "{text}");
        // JSON both ways, and an older daemon's answer without the field.
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let mut old = serde_json::to_value(&s).unwrap();
        old.as_object_mut().unwrap().remove("anycast");
        let back: Snapshot = serde_json::from_value(old).unwrap();
        assert!(back.anycast.is_empty());
    }
}
