//! The lab's layout as data: node names, namespaces, switch ports, addresses,
//! and the text of every config file the lab generates (halo.toml,
//! nginx.conf, keepalived.conf).
//!
//! Pure: nothing here touches the system, so the layout and the generated
//! files are unit-tested (each halo.toml goes through `config::parse_str`).
//! Creating namespaces and starting processes is `sys.rs` and `ops.rs`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Every namespace of a lab starts with this, so `halo lab down` finds
/// them after a crash without any recorded state.
pub const PREFIX: &str = "halo-";
pub const BRIDGE: &str = "br0";
/// The interface name inside every node namespace.
pub const IFACE: &str = "eth0";
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const PREFIX_LEN: u8 = 24;
pub const VRID: u8 = 51;
/// `--vips M`: VIP i (1-based) is 192.0.2.(99+i) with vrid 50+i, so VIP 1 is
/// [`VIP`] with [`VRID`] and a one-VIP lab is unchanged.
pub const MAX_VIPS: u8 = 9;
/// LBs and backends each get at most nine addresses (.11-.19, .21-.29).
pub const MAX_NODES: u8 = 9;
pub const DEFAULT_DIR: &str = "/var/lib/halo/lab";
/// Lab names are short: they become part of every namespace name.
pub const MAX_NAME: usize = 12;

/// One machine of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A load balancer running halo (or keepalived, see [`Peer`]).
    Lb(u8),
    /// A backend running nginx.
    Web(u8),
    /// The machine students send requests from.
    Client,
    /// `up --bgp`: the router in front of the LBs (FRR, ECMP).
    Router,
}

impl Node {
    /// `lb1`, `web2`, `client`.
    pub fn parse(s: &str) -> Result<Node, String> {
        let num = |rest: &str| -> Result<u8, String> {
            match rest.parse::<u8>() {
                Ok(n) if (1..=MAX_NODES).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{s}`: the number must be 1..={MAX_NODES} (nodes are lb1.., web1.., client)"
                )),
            }
        };
        if s == "client" {
            Ok(Node::Client)
        } else if s == "router" {
            Ok(Node::Router)
        } else if let Some(rest) = s.strip_prefix("lb") {
            num(rest).map(Node::Lb)
        } else if let Some(rest) = s.strip_prefix("web") {
            num(rest).map(Node::Web)
        } else {
            Err(format!(
                "`{s}` is not a lab node: use lb1.., web1.. or client"
            ))
        }
    }

    /// The switch-side end of its cable, in the switch namespace: `p-lb1`.
    pub fn port(self) -> String {
        format!("p-{self}")
    }

    pub fn addr(self) -> Ipv4Addr {
        match self {
            Node::Lb(n) => Ipv4Addr::new(192, 0, 2, 10 + n),
            Node::Web(n) => Ipv4Addr::new(192, 0, 2, 20 + n),
            Node::Client => Ipv4Addr::new(192, 0, 2, 2),
            Node::Router => Ipv4Addr::new(192, 0, 2, 1),
        }
    }

    /// Its IPv6 address with `up --ipv6`: 2001:db8:: and the same digits
    /// as the IPv4 host part (lb1 is .11 and ::11), easy to tell apart.
    pub fn addr6(self) -> Ipv6Addr {
        let host = self.addr().octets()[3];
        // "11" read as hex: ::11, not ::b.
        let digits = u16::from_str_radix(&host.to_string(), 16).unwrap_or(0);
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, digits)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Lb(n) => write!(f, "lb{n}"),
            Node::Web(n) => write!(f, "web{n}"),
            Node::Client => f.write_str("client"),
            Node::Router => f.write_str("router"),
        }
    }
}

/// How one lab names its namespaces: `halo-sw`, `halo-lb1`, ... for the
/// default lab; `halo-NAME-sw`, `halo-NAME-lb1`, ... for a named one. Names
/// let several labs run side by side (the test suite builds one per test)
/// and keep each lab's `down` to its own namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    name: Option<String>,
    prefix: String,
}

impl Names {
    /// `None` is the default lab. A name is 1..=12 of a-z, 0-9.
    pub fn new(name: Option<&str>) -> Result<Names, String> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Ok(Names {
                name: None,
                prefix: PREFIX.to_string(),
            });
        };
        let ok = name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(format!(
                "lab name `{name}`: use 1 to {MAX_NAME} of a-z and 0-9 (it goes into namespace names)"
            ));
        }
        Ok(Names {
            name: Some(name.to_string()),
            prefix: format!("{PREFIX}{name}-"),
        })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A node's namespace: `halo-lb1` or `halo-NAME-lb1`.
    pub fn ns(&self, node: Node) -> String {
        format!("{}{node}", self.prefix)
    }

    /// The switch's namespace, holding the bridge.
    pub fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The node a namespace of this lab belongs to, if it is one.
    pub fn node_of(&self, ns: &str) -> Option<Node> {
        Node::parse(ns.strip_prefix(&self.prefix)?).ok()
    }

    /// Is this namespace one of this lab's? Exactly its switch and its
    /// nodes, so `halo lab down` never touches another lab's or another
    /// tool's `halo-something`.
    pub fn is_ours(&self, ns: &str) -> bool {
        ns == self.switch() || self.node_of(ns).is_some()
    }

    /// The directory a lab uses when none is given.
    pub fn default_dir(&self) -> PathBuf {
        match &self.name {
            None => PathBuf::from(DEFAULT_DIR),
            Some(n) => PathBuf::from(format!("{DEFAULT_DIR}-{n}")),
        }
    }

    /// ` --name X` for a named lab, for the commands the lab prints.
    pub fn flag(&self) -> String {
        self.name
            .as_ref()
            .map_or(String::new(), |n| format!(" --name {n}"))
    }
}

/// Which lab a namespace belongs to: `Some((None, node))` for the default
/// lab's, `Some((Some(name), node))` for a named lab's, `None` for anything
/// else. The switch is `node == None`. For `halo lab list`.
pub fn lab_of_netns(ns: &str) -> Option<(Option<String>, Option<Node>)> {
    let rest = ns.strip_prefix(PREFIX)?;
    let part = |s: &str| -> Option<Option<Node>> {
        if s == "sw" {
            Some(None)
        } else {
            Node::parse(s).ok().map(Some)
        }
    };
    if let Some(node) = part(rest) {
        return Some((None, node));
    }
    let (name, node) = rest.split_once('-')?;
    Names::new(Some(name)).ok()?;
    Some((Some(name.to_string()), part(node)?))
}

/// What speaks VRRP on the last LB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// halo everywhere.
    Halo,
    /// Debian's keepalived on the last LB, to show interop.
    Keepalived,
}

/// How the LBs balance with `--l4`: in the kernel, through nftables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum L4Mode {
    /// Direct routing: backends hold the VIP on `lo` and answer the client.
    Dr,
    /// Destination (and source) NAT in the LB.
    Nat,
}

/// The shape of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub lbs: u8,
    /// 0 is a VRRP-only lab: no nginx, and the LBs' halo.toml has no proxy.
    pub backends: u8,
    pub peer: Peer,
    /// Every node also gets an address from 2001:db8::/64 ([`Node::addr6`]).
    pub ipv6: bool,
    /// `[l4.web]` instead of `[proxy.web]` on the LBs.
    pub l4: Option<L4Mode>,
    /// VIPs, one VRRP instance each, masters spread over the LBs
    /// (active-active, [`Spec::master_of`]).
    pub vips: u8,
    /// `--bgp`: a router with FRR in front of the LBs, which announce an
    /// anycast address instead of running VRRP ([`super::bgp`]).
    pub bgp: bool,
}

/// VIP `i` (1-based): 192.0.2.100, .101, ...
pub fn vip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 99 + i)
}

/// The vrid of VIP `i`'s instance: 51, 52, ...
pub fn vrid(i: u8) -> u8 {
    VRID - 1 + i
}

impl Spec {
    pub fn new(lbs: u8, backends: u8, peer: Peer) -> Result<Spec, String> {
        if !(1..=MAX_NODES).contains(&lbs) {
            return Err(format!("--lbs must be 1..={MAX_NODES}, got {lbs}"));
        }
        if backends > MAX_NODES {
            return Err(format!(
                "--backends must be 0..={MAX_NODES}, got {backends}"
            ));
        }
        if peer == Peer::Keepalived && lbs < 2 {
            return Err("--peer keepalived needs --lbs 2 or more (it replaces the last LB)".into());
        }
        Ok(Spec {
            lbs,
            backends,
            peer,
            ipv6: false,
            l4: None,
            vips: 1,
            bgp: false,
        })
    }

    /// `--bgp`: the router, FRR on every LB, `[anycast]` instead of VRRP.
    pub fn with_bgp(self, bgp: bool) -> Result<Spec, String> {
        if !bgp {
            return Ok(self);
        }
        if self.backends == 0 {
            return Err(
                "--bgp needs backends (--backends 1 or more): the anycast address tracks the proxy"
                    .into(),
            );
        }
        if self.peer == Peer::Keepalived || self.l4.is_some() || self.vips != 1 {
            return Err("--bgp replaces VRRP: not with --peer keepalived, --l4 or --vips".into());
        }
        Ok(Spec { bgp, ..self })
    }

    pub fn with_ipv6(self, ipv6: bool) -> Spec {
        Spec { ipv6, ..self }
    }

    pub fn with_l4(self, l4: Option<L4Mode>) -> Result<Spec, String> {
        if l4.is_some() && self.backends == 0 {
            return Err("--l4 needs backends (--backends 1 or more)".into());
        }
        if l4.is_some() && self.peer == Peer::Keepalived {
            return Err("--l4 runs on halo LBs only (not with --peer keepalived)".into());
        }
        Ok(Spec { l4, ..self })
    }

    /// `--vips M`: M instances, VIP i mastered by [`Spec::master_of`].
    pub fn with_vips(self, vips: u8) -> Result<Spec, String> {
        if !(1..=MAX_VIPS).contains(&vips) {
            return Err(format!("--vips must be 1..={MAX_VIPS}, got {vips}"));
        }
        Ok(Spec { vips, ..self })
    }

    /// The preferred master of VIP `i`: lb1 for VIP 1, lb2 for VIP 2, ...,
    /// round robin when there are more VIPs than LBs.
    pub fn master_of(&self, vip: u8) -> u8 {
        (vip - 1) % self.lbs + 1
    }

    /// The LBs in VIP `i`'s priority order: its master, then the others
    /// from the master's next LB on, wrapping (VIP 2 of 3 LBs: lb2, lb3,
    /// lb1). With more VIPs than LBs, a master's second VIP starts its
    /// backups one LB further (VIP 4 of 3 LBs: lb1, lb3, lb2), so a dead
    /// LB's VIPs go to different survivors instead of all to one.
    pub fn order_of(&self, vip: u8) -> Vec<u8> {
        let n = self.lbs;
        let m = self.master_of(vip);
        let round = (vip - 1) / n;
        let mut order = vec![m];
        if n > 1 {
            let shift = round % (n - 1);
            order.extend((0..n - 1).map(|k| (m + (k + shift) % (n - 1)) % n + 1));
        }
        order
    }

    /// LB `lb`'s priority in VIP `i`'s instance: 110 for the master, 10
    /// less for each next in [`Spec::order_of`]. For VIP 1 this is
    /// [`priority`].
    pub fn priority(&self, lb: u8, vip: u8) -> u8 {
        let rank = self
            .order_of(vip)
            .iter()
            .position(|&l| l == lb)
            .unwrap_or(0);
        110 - 10 * rank as u8
    }

    pub fn vip_addrs(&self) -> Vec<Ipv4Addr> {
        (1..=self.vips).map(vip).collect()
    }

    pub fn lbs(&self) -> impl Iterator<Item = Node> {
        (1..=self.lbs).map(Node::Lb)
    }

    pub fn webs(&self) -> impl Iterator<Item = Node> {
        (1..=self.backends).map(Node::Web)
    }

    /// Every node, switch excluded, in start order.
    pub fn nodes(&self) -> Vec<Node> {
        // The router first: the client's cable plugs into it.
        let mut v: Vec<Node> = if self.bgp { vec![Node::Router] } else { vec![] };
        v.extend(self.webs());
        v.extend(self.lbs());
        v.push(Node::Client);
        v
    }

    /// Does this LB run keepalived for VRRP?
    pub fn is_keepalived(&self, lb: u8) -> bool {
        self.peer == Peer::Keepalived && lb == self.lbs
    }
}

/// lb1 110, lb2 100, lb3 90, ...: lb1 is the preferred master.
pub fn priority(lb: u8) -> u8 {
    120 - 10 * lb
}

/// The halo.toml of an LB, or `None` where halo has nothing to do (the
/// keepalived node of a lab without backends). On a keepalived node it has
/// only the proxy: the VIP is keepalived's job there, and halo serves
/// whatever traffic the VIP brings, so a failover to that node still serves
/// pages.
pub fn halo_toml(spec: &Spec, lb: u8) -> Option<String> {
    let node = Node::Lb(lb);
    let proxy = spec.backends > 0;
    if spec.bgp {
        return Some(super::bgp::halo_toml(spec, lb));
    }
    if spec.is_keepalived(lb) && !proxy {
        return None;
    }
    let mut t = String::new();
    t.push_str(&format!(
        "# halo.toml of {node} ({addr}), generated by `halo lab up`.\n\
         # Edit it, then `halo lab reload {node}` to apply the change.\n\
         # Every key is documented in docs/config.md.\n\
         # `halo lab` runs this halo with its control socket beside this file\n\
         # (--socket DIR/{node}/halo.sock: several halos share this machine).\n\n\
         [global]\nlog_level = \"info\"\n\n",
        addr = node.addr()
    ));
    if spec.is_keepalived(lb) {
        t.push_str(
            "# No [vrrp] here: keepalived (keepalived.conf beside this file) holds the VIP\n\
             # on this node. halo only proxies, so the node serves pages when it is master.\n\
             # keepalived does not see halo's health checks: if every backend fails, it\n\
             # keeps the VIP anyway (halo's own `track` has no keepalived equivalent here).\n\n",
        );
    } else {
        for i in 1..=spec.vips {
            vrrp_instance(&mut t, spec, lb, i, proxy);
        }
        t.push_str(
            "# Try: nopreempt = true, preempt_delay = \"5s\", unicast_peers = [\"192.0.2.12\"]\n",
        );
        if !proxy {
            return Some(t);
        }
        t.push('\n');
    }
    if let Some(mode) = spec.l4 {
        t.push_str(&l4_section(spec, mode));
        return Some(t);
    }
    t.push_str(
        "[proxy.web]\n\
         # Every address, so the proxy is ready before this node holds the VIP, and\n\
         # each LB can also be tested on its own address.\n\
         bind = [\"0.0.0.0:80\"]\n\
         balance = \"roundrobin\"\n\
         workers = 1\n\
         servers = [\n",
    );
    push_servers(&mut t, spec);
    t.push_str(
        "]\n\n\
         [proxy.web.health]\n\
         path = \"/health\"\n\
         interval = \"1s\"\n\
         # UP after 2 good checks in a row, DOWN after 3 failed ones.\n\
         rise = 2\n\
         fall = 3\n",
    );
    Some(t)
}

/// The backends as the lines of a `servers = [...]` list (port 80), for
/// `[proxy.web]` and `[l4.web]` alike.
pub(super) fn push_servers(t: &mut String, spec: &Spec) {
    for w in spec.webs() {
        t.push_str(&format!(
            "  {{ name = \"{w}\", address = \"{}:80\" }},\n",
            w.addr()
        ));
    }
}

/// The end of a service's server list and its `[KIND.web.health]` table
/// (GET /health every second, rise 2, fall 3).
pub(super) fn push_health(t: &mut String, kind: &str) {
    t.push_str("]\n\n[");
    t.push_str(kind);
    t.push_str(".web.health]\npath = \"/health\"\ninterval = \"1s\"\nrise = 2\nfall = 3\n");
}

/// `[l4.web]`: the kernel balances the VIP's port 80 over the backends.
fn l4_section(spec: &Spec, mode: L4Mode) -> String {
    let mut t = String::from(
        "[l4.web]\n\
         # Balanced in the kernel by nftables (`nft list ruleset` on this node);\n\
         # docs/l4.md explains the table.\n",
    );
    t.push_str(&format!("address = \"{VIP}\"\nport = 80\n"));
    match mode {
        L4Mode::Dr => t.push_str(&format!(
            "# Direct routing: frames go to the backend's MAC unchanged and the backend\n\
             # answers the client itself (`halo lab up --l4 dr` put the VIP on each\n\
             # backend's lo, with arp_ignore=1 and arp_announce=2).\n\
             forward = \"dr\"\n\
             interface = \"{IFACE}\"\n"
        )),
        L4Mode::Nat => t.push_str(
            "# NAT: the LB rewrites addresses both ways (it forwards: ip_forward=1).\n\
             forward = \"nat\"\n",
        ),
    }
    t.push_str("# Try: scheduler = \"wrr\" with weights, persistence = \"1m\"\nscheduler = \"rr\"\nservers = [\n");
    push_servers(&mut t, spec);
    push_health(&mut t, "l4");
    t
}

/// `[vrrp.VI_i]` of LB `lb` for VIP `i`.
fn vrrp_instance(t: &mut String, spec: &Spec, lb: u8, i: u8, proxy: bool) {
    if i > 1 {
        t.push('\n');
    }
    let order: Vec<String> = spec.order_of(i).iter().map(|n| format!("lb{n}")).collect();
    let who = if spec.vips == 1 {
        "The highest priority holds the VIP; lb1 is preferred.".to_string()
    } else {
        format!(
            "Active-active: each VIP has its own master. This one's order: {}.",
            order.join(", ")
        )
    };
    t.push_str(&format!(
        "[vrrp.VI_{i}]\n\
         interface = \"{IFACE}\"\n\
         vrid = {vrid}\n\
         version = 3\n\
         # {who}\n\
         priority = {prio}\n\
         advert_interval = \"1s\"\n\
         virtual_ips = [\"{addr}/{PREFIX_LEN}\"]\n",
        vrid = vrid(i),
        prio = spec.priority(lb, i),
        addr = vip(i),
    ));
    if proxy && spec.l4.is_some() {
        t.push_str(
            "# While the l4 service below has no healthy backend, advertise priority - 50,\n\
             # so a backup with working backends takes over.\n\
             track = [{ l4 = \"web\", weight = -50 }]\n",
        );
    } else if proxy {
        t.push_str(
            "# While the proxy below has no healthy backend, advertise priority - 50,\n\
             # so a backup with working backends takes over.\n\
             track = [{ proxy = \"web\", weight = -50 }]\n",
        );
    }
}

/// keepalived.conf for the keepalived peer: the same virtual routers as the
/// halos (VRRPv3, vrid 51.., 1 s adverts), as Debian's keepalived 2.2 reads it.
pub fn keepalived_conf(spec: &Spec, lb: u8) -> String {
    let node = Node::Lb(lb);
    let mut t = format!(
        "# keepalived.conf of {node}, generated by `halo lab up --peer keepalived`.\n\
         # keepalived runs VRRP only (--vrrp); halo next to it only proxies.\n\
         global_defs {{\n\
         \x20 router_id {node}\n\
         \x20 vrrp_version 3\n\
         \x20 script_user root\n\
         \x20 enable_script_security\n\
         }}\n"
    );
    for i in 1..=spec.vips {
        t.push_str(&format!(
            "vrrp_instance VI_{i} {{\n\
             \x20 state BACKUP\n\
             \x20 interface {IFACE}\n\
             \x20 virtual_router_id {vrid}\n\
             \x20 priority {prio}\n\
             \x20 advert_int 1\n\
             \x20 virtual_ipaddress {{\n\
             \x20   {addr}/{PREFIX_LEN}\n\
             \x20 }}\n\
             }}\n",
            vrid = vrid(i),
            prio = spec.priority(lb, i),
            addr = vip(i),
        ));
    }
    t
}

/// nginx.conf of a backend: everything (pid, logs, temp files) under the
/// node's own directory, a page naming the host and `/health`. With
/// `on_vip` (direct routing) it also listens on the VIP, which the backend
/// holds on `lo`.
pub fn nginx_conf(web: u8, dir: &Path, on_vip: bool) -> String {
    let node = Node::Web(web);
    let own = dir.join(node.to_string());
    let p = |f: &str| own.join(f).display().to_string();
    format!(
        "# nginx.conf of {node} ({addr}), generated by `halo lab up`.\n\
         # Runs as root: the lab directory may be private (mode 0700), and\n\
         # nothing here reads files, so no worker needs another user.\n\
         user root;\n\
         worker_processes 1;\n\
         pid {pid};\n\
         error_log {err} notice;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20 access_log {acc};\n\
         \x20 client_body_temp_path {tmp}/body;\n\
         \x20 proxy_temp_path {tmp}/proxy;\n\
         \x20 fastcgi_temp_path {tmp}/fastcgi;\n\
         \x20 uwsgi_temp_path {tmp}/uwsgi;\n\
         \x20 scgi_temp_path {tmp}/scgi;\n\
         \x20 default_type text/plain;\n\
         \x20 server {{\n\
         \x20   listen {addr}:80;\n\
         {vip_listen}\
         \x20   add_header X-Served-By {node} always;\n\
         \x20   location = /health {{ return 200 \"ok\\n\"; }}\n\
         \x20   location / {{ return 200 \"{node}: hello from {addr}\\n\"; }}\n\
         \x20 }}\n\
         }}\n",
        addr = node.addr(),
        vip_listen = if on_vip {
            format!("\x20   listen {VIP}:80;\n")
        } else {
            String::new()
        },
        pid = p("nginx.pid"),
        err = p("error.log"),
        acc = p("access.log"),
        tmp = p("tmp"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, TrackTarget};

    #[test]
    fn nodes_parse_and_print_back() {
        for s in ["lb1", "lb9", "web3", "client"] {
            assert_eq!(Node::parse(s).unwrap().to_string(), s);
        }
        for bad in ["lb0", "lb10", "web", "db1", "lb-1", "", "LB1"] {
            assert!(Node::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_fit_in_an_interface_name_and_addresses_are_distinct() {
        let spec = Spec::new(MAX_NODES, MAX_NODES, Peer::Halo).unwrap();
        let nodes = spec.nodes();
        let mut addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
        addrs.push(VIP);
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), nodes.len() + 1);
        for n in nodes {
            assert!(n.port().len() <= 15, "{}", n.port());
            assert_eq!(n.addr().octets()[..3], [192, 0, 2]);
            assert_eq!(n.addr6().segments()[..2], [0x2001, 0xdb8]);
        }
    }

    #[test]
    fn only_the_labs_own_namespaces_are_the_labs() {
        let default = Names::new(None).unwrap();
        for ns in ["halo-sw", "halo-lb1", "halo-web9", "halo-client"] {
            assert!(default.is_ours(ns), "{ns}");
        }
        assert_eq!(default.node_of("halo-web9"), Some(Node::Web(9)));
        // Other tools' namespaces, and other labs'.
        for ns in [
            "halo-test",
            "halo-lb10",
            "halo-",
            "lb1",
            "halo-sw2",
            "xhalo-lb1",
            "halo-t1-lb1",
            "halo-t1-sw",
        ] {
            assert!(!default.is_ours(ns), "{ns}");
        }
        let t1 = Names::new(Some("t1")).unwrap();
        assert_eq!(t1.ns(Node::Lb(2)), "halo-t1-lb2");
        assert_eq!(t1.switch(), "halo-t1-sw");
        assert!(t1.is_ours("halo-t1-client") && t1.is_ours("halo-t1-sw"));
        for ns in ["halo-lb1", "halo-sw", "halo-t12-lb1", "halo-t1-lb0"] {
            assert!(!t1.is_ours(ns), "{ns}");
        }
        assert_eq!(t1.flag(), " --name t1");
        assert_eq!(t1.default_dir(), Path::new("/var/lib/halo/lab-t1"));
        for bad in ["T1", "a-b", "a/b", "abcdefghijklm", " "] {
            assert!(Names::new(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(Names::new(Some("")).unwrap(), default);
    }

    #[test]
    fn namespaces_are_told_apart_by_lab() {
        assert_eq!(lab_of_netns("halo-lb1"), Some((None, Some(Node::Lb(1)))));
        assert_eq!(lab_of_netns("halo-sw"), Some((None, None)));
        assert_eq!(
            lab_of_netns("halo-t1-web2"),
            Some((Some("t1".into()), Some(Node::Web(2))))
        );
        assert_eq!(lab_of_netns("halo-t1-sw"), Some((Some("t1".into()), None)));
        for other in [
            "halo-test",
            "halo-T1-lb1",
            "halo-t1-db1",
            "lb1",
            "halo-a-b-lb1",
        ] {
            assert_eq!(lab_of_netns(other), None, "{other}");
        }
    }

    #[test]
    fn ipv6_addresses_repeat_the_ipv4_digits() {
        assert_eq!(Node::Lb(1).addr6().to_string(), "2001:db8::11");
        assert_eq!(Node::Web(3).addr6().to_string(), "2001:db8::23");
        assert_eq!(Node::Client.addr6().to_string(), "2001:db8::2");
    }

    #[test]
    fn spec_refuses_what_it_cannot_build() {
        assert!(Spec::new(0, 3, Peer::Halo).is_err());
        assert!(Spec::new(2, 0, Peer::Halo).is_ok());
        assert!(Spec::new(2, 10, Peer::Halo).is_err());
        assert!(Spec::new(1, 3, Peer::Keepalived).is_err());
        let s = Spec::new(3, 3, Peer::Keepalived).unwrap();
        assert!(!s.is_keepalived(1) && !s.is_keepalived(2) && s.is_keepalived(3));
    }

    #[test]
    fn generated_halo_toml_is_valid_and_says_what_the_lab_promises() {
        let spec = Spec::new(2, 3, Peer::Halo).unwrap();
        let text = halo_toml(&spec, 1).unwrap();
        let cfg = config::parse_str("lb1/halo.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.vrrp.len(), 1);
        let v = &cfg.vrrp[0];
        assert_eq!(v.vrid.get(), VRID);
        assert_eq!(v.priority.get(), 110);
        assert_eq!(v.virtual_ips[0].to_string(), "192.0.2.100/24");
        assert_eq!(v.track[0].what, TrackTarget::Proxy("web".into()));
        assert_eq!(cfg.proxy.len(), 1);
        let names: Vec<_> = cfg.proxy[0]
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["web1", "web2", "web3"]);
        let lb2 = config::parse_str("lb2", &halo_toml(&spec, 2).unwrap()).unwrap();
        assert!(lb2.vrrp[0].priority < v.priority);
    }

    #[test]
    fn an_l4_lab_balances_in_the_kernel() {
        let base = Spec::new(2, 3, Peer::Halo).unwrap();
        assert!(Spec::new(2, 0, Peer::Halo)
            .unwrap()
            .with_l4(Some(L4Mode::Dr))
            .is_err());
        assert!(Spec::new(2, 3, Peer::Keepalived)
            .unwrap()
            .with_l4(Some(L4Mode::Nat))
            .is_err());
        for (mode, forward) in [
            (
                L4Mode::Dr,
                config::L4Forward::Dr {
                    interface: IFACE.into(),
                },
            ),
            (L4Mode::Nat, config::L4Forward::Nat { snat: true }),
        ] {
            let spec = base.with_l4(Some(mode)).unwrap();
            let text = halo_toml(&spec, 1).unwrap();
            let cfg = config::parse_str("lb1/halo.toml", &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(cfg.proxy.is_empty());
            assert_eq!(cfg.l4.len(), 1);
            assert_eq!(cfg.l4[0].forward, forward);
            assert_eq!(cfg.l4[0].servers.len(), 3);
            assert_eq!(cfg.vrrp[0].track[0].what, TrackTarget::L4("web".into()));
        }
        assert!(nginx_conf(1, Path::new("/l"), true).contains("listen 192.0.2.100:80;"));
        assert!(!nginx_conf(1, Path::new("/l"), false).contains("192.0.2.100"));
    }

    #[test]
    fn a_lab_without_backends_is_vrrp_only() {
        let spec = Spec::new(2, 0, Peer::Halo).unwrap();
        let text = halo_toml(&spec, 1).unwrap();
        let cfg = config::parse_str("lb1/halo.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.proxy.is_empty());
        assert!(cfg.vrrp[0].track.is_empty());
        // keepalived holds the VIP and there is nothing to proxy: no halo.
        let ka = Spec::new(2, 0, Peer::Keepalived).unwrap();
        assert!(halo_toml(&ka, 2).is_none());
        assert!(halo_toml(&ka, 1).is_some());
    }

    #[test]
    fn keepalived_node_gets_a_proxy_only_halo_toml() {
        let spec = Spec::new(2, 2, Peer::Keepalived).unwrap();
        let text = halo_toml(&spec, 2).unwrap();
        let cfg = config::parse_str("lb2/halo.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.vrrp.is_empty());
        assert_eq!(cfg.proxy[0].servers.len(), 2);
        let ka = keepalived_conf(&spec, 2);
        assert!(ka.contains("virtual_router_id 51") && ka.contains("priority 100"));
        assert!(ka.contains("192.0.2.100/24"));
    }

    #[test]
    fn active_active_gives_each_vip_its_own_master_and_order() {
        let spec = Spec::new(3, 2, Peer::Halo).unwrap().with_vips(3).unwrap();
        assert_eq!(spec.order_of(1), [1, 2, 3]);
        assert_eq!(spec.order_of(2), [2, 3, 1]);
        assert_eq!(spec.order_of(3), [3, 1, 2]);
        // More VIPs than LBs: round robin; fewer LBs than VIPs is fine.
        let five = Spec::new(2, 0, Peer::Halo).unwrap().with_vips(5).unwrap();
        let masters: Vec<u8> = (1..=5).map(|i| five.master_of(i)).collect();
        assert_eq!(masters, [1, 2, 1, 2, 1]);
        // Six VIPs on three LBs: each LB masters two, and when it dies they
        // go to the two survivors, one each.
        let six = Spec::new(3, 0, Peer::Halo).unwrap().with_vips(6).unwrap();
        assert_eq!(six.order_of(4), [1, 3, 2]);
        for dead in 1..=3u8 {
            let mut heirs: Vec<u8> = (1..=6)
                .filter(|&i| six.master_of(i) == dead)
                .map(|i| six.order_of(i)[1])
                .collect();
            heirs.sort_unstable();
            let survivors: Vec<u8> = (1..=3).filter(|&l| l != dead).collect();
            assert_eq!(heirs, survivors, "lb{dead}'s VIPs");
        }
        for i in 1..=6 {
            let mut o = six.order_of(i);
            o.sort_unstable();
            assert_eq!(o, [1, 2, 3], "VIP {i}: every LB once");
        }
        assert_eq!(
            Spec::new(1, 0, Peer::Halo)
                .unwrap()
                .with_vips(3)
                .unwrap()
                .order_of(3),
            [1]
        );
        assert!(Spec::new(2, 0, Peer::Halo).unwrap().with_vips(0).is_err());
        assert!(Spec::new(2, 0, Peer::Halo).unwrap().with_vips(10).is_err());
        let cfgs: Vec<config::Config> = (1..=3)
            .map(|lb| {
                let text = halo_toml(&spec, lb).unwrap();
                config::parse_str(&format!("lb{lb}/halo.toml"), &text)
                    .unwrap_or_else(|e| panic!("{e}\n{text}"))
            })
            .collect();
        for i in 1..=3u8 {
            // Instance VI_i on every LB: same vrid and VIP, and priorities
            // strictly falling along the VIP's order.
            let prios: Vec<u8> = spec
                .order_of(i)
                .iter()
                .map(|&lb| {
                    let c = &cfgs[usize::from(lb - 1)];
                    let v = c.vrrp.iter().find(|v| v.name == format!("VI_{i}")).unwrap();
                    assert_eq!(v.vrid.get(), 50 + i);
                    assert_eq!(
                        v.virtual_ips[0].to_string(),
                        format!("192.0.2.{}/24", 99 + i)
                    );
                    assert_eq!(v.track.len(), 1);
                    v.priority.get()
                })
                .collect();
            assert_eq!(prios, [110, 100, 90], "VI_{i}");
        }
        // The VIPs and vrids never collide with a node's.
        let addrs = spec.vip_addrs();
        assert_eq!(addrs[0], VIP);
        for n in Spec::new(MAX_NODES, MAX_NODES, Peer::Halo).unwrap().nodes() {
            assert!(!(1..=MAX_VIPS).map(vip).any(|v| v == n.addr()), "{n}");
        }
    }

    #[test]
    fn one_vip_lab_keeps_the_old_priorities() {
        let spec = Spec::new(4, 1, Peer::Halo).unwrap();
        for lb in 1..=4 {
            assert_eq!(spec.priority(lb, 1), priority(lb));
        }
        let text = halo_toml(&spec, 2).unwrap();
        assert!(text.contains("[vrrp.VI_1]") && !text.contains("VI_2"));
    }

    #[test]
    fn keepalived_peer_runs_every_instance() {
        let spec = Spec::new(2, 2, Peer::Keepalived)
            .unwrap()
            .with_vips(2)
            .unwrap();
        let ka = keepalived_conf(&spec, 2);
        assert!(ka.contains("vrrp_instance VI_1") && ka.contains("vrrp_instance VI_2"));
        assert!(ka.contains("virtual_router_id 52") && ka.contains("192.0.2.101/24"));
        // lb2 is VIP 2's master, VIP 1's backup.
        let prios: Vec<&str> = ka
            .lines()
            .filter_map(|l| l.trim().strip_prefix("priority "))
            .collect();
        assert_eq!(prios, ["100", "110"]);
    }

    #[test]
    fn nginx_conf_keeps_everything_under_the_lab_dir() {
        let text = nginx_conf(2, Path::new("/tmp/lab"), false);
        for line in text.lines() {
            let line = line.trim();
            for key in [
                "pid ",
                "error_log ",
                "access_log ",
                "client_body_temp_path ",
            ] {
                if line.starts_with(key) {
                    assert!(line.contains("/tmp/lab/web2/"), "{line}");
                }
            }
        }
        assert!(text.contains("listen 192.0.2.22:80;"));
        assert!(text.contains("X-Served-By web2"));
    }
}
