//! A running lab: found from its namespaces (`halo-*`, see [`Names`]), not from a record
//! of what was started, so every command works after a crash. Also what the
//! commands share: the tools the lab needs, starting a node's daemons,
//! asking each halo over its control socket, and probing from the client.
//!
//! The lab directory holds what students read and edit (configs, logs); its
//! pid files are a courtesy: processes are always found inside their
//! namespace by name.

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::plan::{self, Names, Node, IFACE, VIP};
use super::probe::{self, Reply};
use super::sys::{self, Tool};
use super::Which;
use crate::control;
use crate::telemetry::status::Snapshot;

pub(super) const IPROUTE: Tool = Tool {
    command: "ip",
    package: "iproute2",
};
pub(super) const BRIDGE_TOOL: Tool = Tool {
    command: "bridge",
    package: "iproute2",
};
pub(super) const NGINX: Tool = Tool {
    command: "nginx",
    package: "nginx-light",
};
pub(super) const NFT: Tool = Tool {
    command: "nft",
    package: "nftables",
};
pub(super) const KEEPALIVED: Tool = Tool {
    command: "keepalived",
    package: "keepalived",
};

// === the running lab ===

/// What the namespaces and the lab directory say is running.
pub(super) struct Running {
    pub dir: PathBuf,
    pub names: Names,
    pub lbs: Vec<u8>,
    pub webs: Vec<u8>,
    pub client: bool,
    /// `up --bgp`: the router namespace exists.
    pub router: bool,
}

impl Running {
    /// Find the lab; an error if there is none.
    pub fn find(which: &Which) -> Result<Running> {
        sys::require(&[IPROUTE])?;
        let names = which.names.clone();
        let mut r = Running {
            dir: which.dir.clone(),
            names: names.clone(),
            lbs: Vec::new(),
            webs: Vec::new(),
            client: false,
            router: false,
        };
        for ns in lab_namespaces(&names)? {
            match names.node_of(&ns) {
                Some(Node::Lb(n)) => r.lbs.push(n),
                Some(Node::Web(n)) => r.webs.push(n),
                Some(Node::Client) => r.client = true,
                Some(Node::Router) => r.router = true,
                None => {}
            }
        }
        if r.lbs.is_empty() && r.webs.is_empty() {
            bail!(
                "no lab is up (no {lb}/{web} namespace): start one with `{c} up{f}`",
                c = sys::lab_cmd(),
                lb = names.ns(Node::Lb(1)),
                web = names.ns(Node::Web(1)),
                f = names.flag()
            );
        }
        r.lbs.sort_unstable();
        r.webs.sort_unstable();
        Ok(r)
    }

    pub fn node_dir(&self, node: Node) -> PathBuf {
        self.dir.join(node.to_string())
    }

    /// The namespace of one of this lab's nodes.
    pub fn ns(&self, node: Node) -> String {
        self.names.ns(node)
    }

    /// keepalived runs there if `up --peer keepalived` (or a test) wrote
    /// its config.
    pub fn is_keepalived(&self, lb: u8) -> bool {
        self.node_dir(Node::Lb(lb)).join("keepalived.conf").exists()
    }

    /// halo runs there if the node has a halo.toml (the keepalived node of
    /// a lab without backends has none).
    pub fn runs_halo(&self, lb: u8) -> bool {
        self.node_dir(Node::Lb(lb)).join("halo.toml").exists()
    }

    /// The daemons a node runs, by process name: what its files ask for.
    pub fn daemons(&self, node: Node) -> Vec<&'static str> {
        match node {
            Node::Lb(n) => {
                let mut d = Vec::new();
                if self.is_keepalived(n) {
                    d.push("keepalived");
                }
                if self.runs_halo(n) {
                    d.push("halo");
                }
                if super::bgp_run::runs_frr(self, node) {
                    d.extend(super::bgp::FRR_DAEMONS);
                }
                d
            }
            Node::Web(_) => vec!["nginx"],
            Node::Client => vec![],
            Node::Router => super::bgp::FRR_DAEMONS.to_vec(),
        }
    }

    pub fn has(&self, node: Node) -> bool {
        match node {
            Node::Lb(n) => self.lbs.contains(&n),
            Node::Web(n) => self.webs.contains(&n),
            Node::Client => self.client,
            Node::Router => self.router,
        }
    }

    /// LBs holding the VIP right now, by the kernel's own view.
    pub fn holders(&self) -> Vec<u8> {
        self.holders_of(VIP)
    }

    /// LBs holding `vip` right now (`up --vips`: each VIP has its own).
    pub fn holders_of(&self, vip: std::net::Ipv4Addr) -> Vec<u8> {
        self.lbs
            .iter()
            .copied()
            .filter(|&n| sys::ipv4_addrs(&self.ns(Node::Lb(n)), IFACE).contains(&vip))
            .collect()
    }

    /// ` --name N --dir X` as far as they differ from the defaults, for
    /// the commands the lab prints.
    pub(super) fn dir_flag(&self) -> String {
        dir_flag(&self.names, &self.dir)
    }

    /// Run `f` in the client namespace.
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        sys::in_netns(&self.ns(Node::Client), f)
    }
}

pub(super) fn dir_flag(names: &Names, dir: &Path) -> String {
    let mut f = names.flag();
    if dir != names.default_dir() {
        f.push_str(&format!(" --dir {}", dir.display()));
    }
    f
}

/// The lab's namespaces: exactly its switch and its nodes, so another
/// lab's or another tool's `halo-something` namespace is never touched.
pub(super) fn lab_namespaces(names: &Names) -> Result<Vec<String>> {
    Ok(sys::netns_with_prefix(plan::PREFIX)?
        .into_iter()
        .filter(|ns| names.is_ours(ns))
        .collect())
}

pub(super) fn parse_node(s: &str) -> Result<Node> {
    Node::parse(s).map_err(anyhow::Error::msg)
}

/// A daemon `halo lab` started in the background.
pub(super) struct Started {
    pub node: Node,
    pub name: &'static str,
    pub pid: u32,
    pub log: PathBuf,
}

/// Start what a node runs. Returns the daemons left running in the
/// background (nginx daemonises itself and is not among them).
pub(super) fn start_daemons(lab: &Running, node: Node) -> Result<Vec<Started>> {
    let mut started = Vec::new();
    let own = lab.node_dir(node);
    let ns = lab.ns(node);
    match node {
        Node::Web(_) => {
            let conf = own.join("nginx.conf");
            ensure_exists(&conf)?;
            let prefix = format!("{}/", own.display());
            let err = own.join("error.log");
            // nginx daemonises itself (its own session, pid file in `own`)
            // and reports a bad config by its exit status.
            let c = conf.display().to_string();
            let e = err.display().to_string();
            sys::exec_in(&ns, "nginx", &["-c", &c, "-p", &prefix, "-e", &e])
                .with_context(|| format!("starting nginx on {node}"))?;
        }
        Node::Router => return super::bgp_run::start_frr(lab, node),
        Node::Lb(n) => {
            if super::bgp_run::runs_frr(lab, node) {
                started.extend(super::bgp_run::start_frr(lab, node)?);
            }
            let exe = std::env::current_exe().context("locating the halo binary")?;
            if lab.is_keepalived(n) {
                let ka = sys::which("keepalived").context("keepalived is not installed")?;
                let conf = own.join("keepalived.conf");
                ensure_exists(&conf)?;
                let args: Vec<PathBuf> = vec![
                    "--dont-fork".into(),
                    "--log-console".into(),
                    "--log-detail".into(),
                    "--vrrp".into(),
                    "-f".into(),
                    conf,
                    "-p".into(),
                    own.join("keepalived.pid"),
                    "-r".into(),
                    own.join("vrrp.pid"),
                    "-c".into(),
                    own.join("checkers.pid"),
                ];
                let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
                let log = own.join("keepalived.log");
                let pid = sys::spawn_detached(&ns, &ka, &args, &log)?;
                started.push(Started {
                    node,
                    name: "keepalived",
                    pid,
                    log,
                });
            }
            if !lab.runs_halo(n) {
                if started.is_empty() {
                    ensure_exists(&own.join("halo.toml"))?;
                }
                return Ok(started);
            }
            started.push(start_halo(lab, n, &exe)?);
        }
        Node::Client => bail!("the client runs no daemon"),
    }
    Ok(started)
}

/// `halo run` on an LB with its halo.toml, and its control socket beside it
/// (one per LB: several halos share this machine's file system).
pub(super) fn start_halo(lab: &Running, lb: u8, exe: &Path) -> Result<Started> {
    let node = Node::Lb(lb);
    let own = lab.node_dir(node);
    let conf = own.join("halo.toml");
    ensure_exists(&conf)?;
    let socket = control_socket(lab, lb);
    let args = [
        OsStr::new("run"),
        OsStr::new("--config"),
        conf.as_os_str(),
        OsStr::new("--socket"),
        socket.as_os_str(),
    ];
    let log = own.join("halo.log");
    let pid = sys::spawn_detached(&lab.ns(node), exe, &args, &log)?;
    fs::write(own.join("halo.pid"), format!("{pid}\n"))?;
    Ok(Started {
        node,
        name: "halo",
        pid,
        log,
    })
}

pub(super) fn ensure_exists(p: &Path) -> Result<()> {
    if p.exists() {
        Ok(())
    } else {
        bail!(
            "{} is missing: is the lab directory the one given to `halo lab up` (--dir)?",
            p.display()
        )
    }
}

pub(super) fn vip_url() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

impl Running {
    /// Where the client sends requests: the VIP, or in a BGP lab the
    /// anycast address.
    pub(super) fn service_url(&self) -> SocketAddr {
        if self.router {
            super::bgp_run::anycast_url()
        } else {
            vip_url()
        }
    }
}

/// Each backend's `/health`, asked directly from the client.
pub(super) fn backend_health(lab: &Running) -> Result<Vec<(u8, Result<Reply, probe::ProbeError>)>> {
    let webs = lab.webs.clone();
    lab.in_client(move || {
        webs.iter()
            .map(|&w| {
                let addr = SocketAddr::from((Node::Web(w).addr(), 80));
                (w, probe::get(addr, "/health", Duration::from_millis(500)))
            })
            .collect()
    })
}

pub(super) fn port_state(lab: &Running, node: Node) -> String {
    let out = sys::ip(&[
        "-n",
        &lab.names.switch(),
        "-d",
        "-o",
        "link",
        "show",
        "dev",
        &node.port(),
    ])
    .unwrap_or_default();
    if out.is_empty() {
        "missing".into()
    } else if !out.contains(",UP") && !out.contains("<UP") {
        "CUT".into()
    } else if out.contains("isolated on") {
        "isolated".into()
    } else if out.contains("mcast_flood off") {
        "no-mcast".into()
    } else {
        "up".into()
    }
}

/// The priority a node is configured with (halo.toml or keepalived.conf).
pub(super) fn configured_priority(lab: &Running, lb: u8) -> Option<u8> {
    let own = lab.node_dir(Node::Lb(lb));
    if lab.is_keepalived(lb) {
        let text = fs::read_to_string(own.join("keepalived.conf")).ok()?;
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "priority").then(|| w.next()?.parse().ok())?
        })
    } else {
        let cfg = crate::config::load(&own.join("halo.toml")).ok()?;
        cfg.vrrp.first().map(|v| v.priority.get())
    }
}

/// The control socket of an LB's halo: the lab always starts it with
/// `--socket DIR/lbN/halo.sock`.
pub(super) fn control_socket(lab: &Running, lb: u8) -> PathBuf {
    lab.node_dir(Node::Lb(lb)).join("halo.sock")
}

/// What an LB's halo says about itself over its control socket, if it
/// answers. (A Unix socket path works across network namespaces.)
pub(super) fn snapshot(lab: &Running, lb: u8) -> Option<Snapshot> {
    let req = control::Request::Status;
    control::request(&control_socket(lab, lb), &req, Duration::from_secs(2))
        .ok()?
        .status
}
