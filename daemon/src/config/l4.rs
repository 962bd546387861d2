//! `[l4.NAME]` sections -> [`L4Service`]s: a virtual service balanced in
//! the kernel by nftables (keepalived's `virtual_server`), with the same
//! `[health]` subtable as proxy services. Checked per service and across
//! services (no address, port and protocol balanced twice).
//!
//! Names end up in nftables chain and set names, so they are kept to
//! letters, digits, `-` and `_`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Diag;
use super::raw::{Field, Opt, RawDuration, RawHealth};
use super::validate::{
    boolean, choice, in_range, int_at, no_duplicates, parse_as, required, required_list, take, Span,
};
use super::HealthCheck;

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(expecting = "a [l4.NAME] table")]
pub struct RawL4 {
    pub address: Opt<String>,
    pub port: Opt<i64>,
    pub protocol: Opt<String>,
    pub forward: Opt<String>,
    pub interface: Opt<String>,
    pub snat: Opt<bool>,
    pub scheduler: Opt<String>,
    pub persistence: Opt<RawDuration>,
    pub servers: Opt<Vec<Field<RawL4Server>>>,
    pub sorry: Opt<String>,
    pub health: Opt<RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table such as { name = \"web1\", address = \"192.0.2.21:80\" }")]
pub struct RawL4Server {
    pub name: Opt<String>,
    pub address: Opt<String>,
    pub weight: Opt<i64>,
}

// === validated ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Protocol {
    Tcp,
    Udp,
}

impl L4Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        }
    }
}

/// How packets reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Forward {
    /// Destination NAT in the balancer; with `snat` also source NAT, so
    /// replies come back through the balancer whatever the servers' routes
    /// (the servers then see the balancer's address, not the client's).
    Nat { snat: bool },
    /// Direct routing: the frame is re-addressed to the server's MAC on
    /// `interface` and the server answers the client itself.
    Dr { interface: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Scheduler {
    /// Round robin, weights ignored (LVS `rr`).
    RoundRobin,
    /// Weighted round robin (LVS `wrr`).
    WeightedRoundRobin,
    /// Hash of the client address, weighted (LVS `sh`).
    SourceHash,
}

impl L4Scheduler {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Scheduler::RoundRobin => "rr",
            L4Scheduler::WeightedRoundRobin => "wrr",
            L4Scheduler::SourceHash => "sh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Server {
    pub name: String,
    pub address: SocketAddr,
    /// 1..=256.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct L4Service {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: L4Protocol,
    pub forward: L4Forward,
    pub scheduler: L4Scheduler,
    /// Keep a client on its server for this long after its last packet
    /// (keepalived's `persistence_timeout`); none = off.
    pub persistence: Option<Duration>,
    pub servers: Vec<L4Server>,
    /// Where new flows go while no server is up.
    pub sorry: Option<SocketAddr>,
    pub health: Option<HealthCheck>,
}

// === validation ===

/// The longest service or server name: both go into nftables object names
/// (at most 255 bytes) together with a few more characters.
const MAX_NAME: usize = 32;

/// All services in file order, then the cross-service check.
pub fn services(d: &mut Diag, raw: Vec<(Spanned<String>, RawL4)>) -> Vec<L4Service> {
    let mut out = Vec::new();
    let mut taken: BTreeMap<(IpAddr, u16, &'static str), (String, Span)> = BTreeMap::new();
    for (name, r) in raw {
        let Some((svc, at)) = service(d, &name, r) else {
            continue;
        };
        let key = (svc.address, svc.port, svc.protocol.as_str());
        match taken.get(&key) {
            Some((other, first)) => {
                let msg = format!(
                    "{} port {} {} is already balanced by [l4.{other}] at {}",
                    svc.address,
                    svc.port,
                    svc.protocol.as_str(),
                    d.place(first)
                );
                d.error(&at, msg);
            }
            None => {
                taken.insert(key, (svc.name.clone(), at));
            }
        }
        out.push(svc);
    }
    out
}

fn object_name(d: &mut Diag, at: &Span, what: &str, n: &str) -> bool {
    let ok = !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        d.error(
            at,
            format!("{what} \"{n}\" must be 1..={MAX_NAME} letters, digits, '-' or '_' (it names nftables objects)"),
        );
    }
    ok
}

fn service(d: &mut Diag, name: &Spanned<String>, r: RawL4) -> Option<(L4Service, Span)> {
    let here = format!("[l4.{}]", name.get_ref());
    let table = name.span();
    let name_ok = object_name(d, &table, "l4 service name", name.get_ref());

    let address = required(d, "address", r.address, &table, &here).and_then(|(at, text)| {
        parse_as::<IpAddr>(d, "address", &at, &text, "an IP address").map(|a| (at, a))
    });
    let port = required(d, "port", r.port, &table, &here)
        .and_then(|(at, p)| in_range(d, "port", &at, p, 1..=65535).then_some((at, p as u16)));
    let protocol = choice(
        d,
        "protocol",
        r.protocol,
        &[("tcp", L4Protocol::Tcp), ("udp", L4Protocol::Udp)],
        L4Protocol::Tcp,
    );
    #[derive(Clone, Copy, PartialEq)]
    enum Fwd {
        Nat,
        Dr,
    }
    let forward_at = r.forward.as_ref().map(|f| f.span.clone());
    let fwd = choice(
        d,
        "forward",
        r.forward,
        &[("nat", Fwd::Nat), ("dr", Fwd::Dr)],
        Fwd::Nat,
    );
    let snat_at = r.snat.as_ref().map(|f| f.span.clone());
    let snat = boolean(d, "snat", r.snat, true);
    let interface = take(d, "interface", r.interface);
    let forward = match fwd {
        Fwd::Nat => {
            if let Some((at, _)) = &interface {
                d.error(at, "`interface` only applies to forward = \"dr\"");
            }
            L4Forward::Nat { snat }
        }
        Fwd::Dr => {
            if let Some(at) = snat_at {
                d.error(&at, "`snat` only applies to forward = \"nat\"");
            }
            match interface {
                Some((at, i)) => {
                    if i.is_empty() || i.len() > 15 || i.contains(['/', ' ', '\0']) {
                        d.error(&at, format!("`interface` \"{i}\" is not an interface name"));
                    }
                    L4Forward::Dr { interface: i }
                }
                None => {
                    d.error(
                        forward_at.as_ref().unwrap_or(&table),
                        format!("{here} with forward = \"dr\" needs `interface` (where the servers are)"),
                    );
                    L4Forward::Dr {
                        interface: String::new(),
                    }
                }
            }
        }
    };
    let scheduler = choice(
        d,
        "scheduler",
        r.scheduler,
        &[
            ("rr", L4Scheduler::RoundRobin),
            ("wrr", L4Scheduler::WeightedRoundRobin),
            ("sh", L4Scheduler::SourceHash),
        ],
        L4Scheduler::RoundRobin,
    );
    let persistence = take(d, "persistence", r.persistence).and_then(|(at, RawDuration(p))| {
        if p < Duration::from_secs(1) || p > Duration::from_secs(86400 * 30) {
            d.error(
                &at,
                format!(
                    "`persistence` must be 1s..=30d, got {}",
                    super::duration::format(p)
                ),
            );
            return None;
        }
        Some(p)
    });
    let default_port = port.as_ref().map_or(0, |(_, p)| *p);
    let servers = servers(d, r.servers, &table, &here, default_port);
    let sorry = take(d, "sorry", r.sorry)
        .and_then(|(at, text)| endpoint(d, "sorry", &at, &text, default_port).map(|a| (at, a)));
    let health = take(d, "health", r.health).map(|(_, mut h)| {
        // halo never sees an L4 service's traffic: nothing to observe.
        if let Some(f) = h.observe.take() {
            d.error(
                &f.span,
                "`observe` only applies to proxy services (halo does not see l4 traffic)",
            );
        }
        let mut hc = super::proxy::health(d, h);
        hc.observe_connect_errors = false;
        hc.observe_5xx = false;
        hc
    });

    // Rules between keys: what the kernel can forward.
    if let Some((vat, vip)) = &address {
        let mut targets: Vec<(Span, &str, SocketAddr)> = servers
            .iter()
            .map(|(at, s)| (at.clone(), "server", s.address))
            .collect();
        if let Some((at, a)) = &sorry {
            targets.push((at.clone(), "sorry server", *a));
        }
        for (at, what, a) in &targets {
            if a.is_ipv4() != vip.is_ipv4() {
                d.error(
                    at,
                    format!("{what} {a} is not of the same address family as `address` {vip}"),
                );
            }
            if fwd == Fwd::Dr && a.port() != default_port && default_port != 0 {
                d.error(
                    at,
                    format!(
                        "{what} {a}: direct routing cannot change the port (the server must listen on {default_port})"
                    ),
                );
            }
        }
        if fwd == Fwd::Dr && vip.is_ipv6() {
            d.error(vat, "forward = \"dr\" supports IPv4 addresses only");
        }
    }

    let (address, port) = (address?, port?);
    if !name_ok || servers.is_empty() {
        return None;
    }
    let svc = L4Service {
        name: name.get_ref().clone(),
        address: address.1,
        port: port.1,
        protocol,
        forward,
        scheduler,
        persistence,
        servers: servers.into_iter().map(|(_, s)| s).collect(),
        sorry: sorry.map(|(_, a)| a),
        health,
    };
    Some((svc, address.0))
}

/// "ip:port", or a bare "ip" meaning the service's port.
fn endpoint(d: &mut Diag, key: &str, at: &Span, text: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let what = "an address \"ip\" or \"ip:port\" (IPv6 as \"[2001:db8::1]:80\")";
    let a: SocketAddr = parse_as(d, key, at, text, what)?;
    if a.port() == 0 {
        d.error(at, format!("`{key}` {a}: port 0 is not allowed"));
        return None;
    }
    Some(a)
}

fn servers(
    d: &mut Diag,
    f: Opt<Vec<Field<RawL4Server>>>,
    table: &Span,
    here: &str,
    port: u16,
) -> Vec<(Span, L4Server)> {
    let Some((at, items)) = required_list(d, "servers", f, table, here) else {
        return Vec::new();
    };
    if items.is_empty() {
        d.error(
            &at,
            "`servers` is empty: give at least one { name, address }",
        );
    }
    let mut names = Vec::new();
    let mut addrs = Vec::new();
    let mut out = Vec::new();
    for (at, s) in items {
        let name = required(d, "name", s.name, &at, "a server entry").and_then(|(nat, n)| {
            object_name(d, &nat, "server `name`", &n).then(|| {
                names.push((nat, n.clone()));
                n
            })
        });
        let address =
            required(d, "address", s.address, &at, "a server entry").and_then(|(aat, text)| {
                let a = endpoint(d, "address", &aat, &text, port)?;
                addrs.push((aat, a));
                Some(a)
            });
        let weight = int_at(d, "weight", s.weight, 1..=256).map_or(1, |(_, w)| w as u32);
        if let (Some(name), Some(address)) = (name, address) {
            out.push((
                at,
                L4Server {
                    name,
                    address,
                    weight,
                },
            ));
        }
    }
    no_duplicates(d, "server name", names);
    no_duplicates(d, "server address", addrs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, TrackTarget};

    use crate::config::tests::errors;

    const DR: &str = r#"[l4.web]
address = "192.0.2.100"
port = 80
forward = "dr"
interface = "eth0"
scheduler = "wrr"
persistence = "5m"
servers = [
  { name = "web1", address = "192.0.2.21", weight = 2 },
  { name = "web2", address = "192.0.2.22:80" },
]
sorry = "192.0.2.30"

[l4.web.health]
type = "tcp"

[vrrp.VI_1]
interface = "eth0"
vrid = 51
virtual_ips = ["192.0.2.100/24"]
track = [{ l4 = "web", weight = -50 }]
"#;

    #[test]
    fn a_dr_service_with_everything() {
        let c = parse_str("t.toml", DR).expect("valid");
        let s = &c.l4[0];
        assert_eq!(s.name, "web");
        assert_eq!(s.port, 80);
        assert_eq!(s.protocol, L4Protocol::Tcp);
        assert_eq!(
            s.forward,
            L4Forward::Dr {
                interface: "eth0".into()
            }
        );
        assert_eq!(s.scheduler, L4Scheduler::WeightedRoundRobin);
        assert_eq!(s.persistence, Some(Duration::from_secs(300)));
        assert_eq!(s.servers[0].address, "192.0.2.21:80".parse().unwrap());
        assert_eq!(s.servers[0].weight, 2);
        assert_eq!(s.sorry, Some("192.0.2.30:80".parse().unwrap()));
        assert!(s.health.as_ref().is_some_and(|h| !h.observe_connect_errors));
        let text = crate::config::summary(&c);
        assert!(
            text.contains("l4 web: tcp 192.0.2.100 port 80, forward dr on eth0, scheduler wrr, persistence 5m"),
            "{text}"
        );
        assert_eq!(c.vrrp[0].track[0].what, TrackTarget::L4("web".into()));
    }

    #[test]
    fn defaults_are_nat_with_snat_round_robin() {
        let c = parse_str(
            "t.toml",
            "[l4.dns]\naddress = \"2001:db8::100\"\nport = 53\nprotocol = \"udp\"\nservers = [{ name = \"ns1\", address = \"[2001:db8::21]:5353\" }]\n",
        )
        .expect("valid");
        let s = &c.l4[0];
        assert_eq!(s.forward, L4Forward::Nat { snat: true });
        assert_eq!(s.scheduler, L4Scheduler::RoundRobin);
        assert_eq!(s.protocol, L4Protocol::Udp);
        assert_eq!(s.persistence, None);
    }

    #[test]
    fn what_the_kernel_cannot_forward_is_refused_in_place() {
        let e = errors(
            r#"[l4.web]
address = "192.0.2.100"
port = 80
forward = "dr"
servers = [
  { name = "web1", address = "192.0.2.21:8080" },
  { name = "web2", address = "[2001:db8::22]:80" },
]
"#,
        );
        assert_eq!(
            e,
            [
                "4:11: [l4.web] with forward = \"dr\" needs `interface` (where the servers are)",
                "6:3: server 192.0.2.21:8080: direct routing cannot change the port (the server must listen on 80)",
                "7:3: server [2001:db8::22]:80 is not of the same address family as `address` 192.0.2.100",
            ]
        );
        let e = errors(
            "[l4.web]\naddress = \"192.0.2.100\"\nport = 80\ninterface = \"eth0\"\nservers = [{ name = \"a b\", address = \"192.0.2.21\" }]\n",
        );
        assert_eq!(
            e,
            [
                "4:13: `interface` only applies to forward = \"dr\"",
                "5:21: server `name` \"a b\" must be 1..=32 letters, digits, '-' or '_' (it names nftables objects)",
            ]
        );
    }

    #[test]
    fn a_vip_port_is_balanced_once_and_tracks_name_a_service() {
        let one = "address = \"192.0.2.100\"\nport = 80\nservers = [{ name = \"a\", address = \"192.0.2.21\" }]\n";
        let e = errors(&format!("[l4.a]\n{one}[l4.b]\n{one}"));
        assert_eq!(
            e,
            ["6:11: 192.0.2.100 port 80 tcp is already balanced by [l4.a] at 2:11"]
        );
        let e = errors(&format!(
            "[l4.web]\n{one}[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"192.0.2.100\"]\ntrack = [{{ l4 = \"wbe\", weight = -10 }}]\n"
        ));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("track names l4 \"wbe\" but there is no [l4.wbe] section"),
            "{e:?}"
        );
        let e = errors(&format!(
            "[l4.web]\n{one}[l4.web.health]\nobserve = [\"5xx\"]\n"
        ));
        assert_eq!(
            e,
            ["6:11: `observe` only applies to proxy services (halo does not see l4 traffic)"]
        );
        let e = errors(&format!("[l4.web]\n{one}persistance = \"5m\"\n"));
        assert!(
            e[0].contains("unknown key `persistance` in [l4.web]"),
            "{e:?}"
        );
    }
}
