//! A running lab: found from its namespaces (`halo-*`), not from a record
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

use super::plan::{self, Node, IFACE, PREFIX, SWITCH_NS, VIP};
use super::probe::{self, Reply};
use super::sys::{self, Tool};
use crate::control;
use crate::status::Snapshot;

pub(super) const IPROUTE: Tool = Tool {
    command: "ip",
    package: "iproute2",
};
pub(super) const BRIDGE_TOOL: Tool = Tool {
    command: "bridge",
    package: "iproute2",
};
pub(super) const SYSCTL: Tool = Tool {
    command: "sysctl",
    package: "procps",
};
pub(super) const NGINX: Tool = Tool {
    command: "nginx",
    package: "nginx-light",
};
pub(super) const KEEPALIVED: Tool = Tool {
    command: "keepalived",
    package: "keepalived",
};

// === the running lab ===

/// What the namespaces and the lab directory say is running.
pub(super) struct Running {
    pub dir: PathBuf,
    pub lbs: Vec<u8>,
    pub webs: Vec<u8>,
    pub client: bool,
}

impl Running {
    /// Find the lab; an error if there is none.
    pub fn find(dir: &Path) -> Result<Running> {
        sys::require(&[IPROUTE])?;
        let mut r = Running {
            dir: dir.to_path_buf(),
            lbs: Vec::new(),
            webs: Vec::new(),
            client: false,
        };
        for ns in lab_namespaces()? {
            match ns.strip_prefix(PREFIX).map(Node::parse) {
                Some(Ok(Node::Lb(n))) => r.lbs.push(n),
                Some(Ok(Node::Web(n))) => r.webs.push(n),
                Some(Ok(Node::Client)) => r.client = true,
                _ => {}
            }
        }
        if r.lbs.is_empty() && r.webs.is_empty() {
            bail!("no lab is up (no {PREFIX}lb*/{PREFIX}web* namespace): start one with `halo lab up`");
        }
        r.lbs.sort_unstable();
        r.webs.sort_unstable();
        Ok(r)
    }

    pub fn node_dir(&self, node: Node) -> PathBuf {
        self.dir.join(node.to_string())
    }

    /// keepalived runs there if `up --peer keepalived` wrote its config.
    pub fn is_keepalived(&self, lb: u8) -> bool {
        self.node_dir(Node::Lb(lb)).join("keepalived.conf").exists()
    }

    /// The daemons a node runs, by process name.
    pub fn daemons(&self, node: Node) -> Vec<&'static str> {
        match node {
            Node::Lb(n) if self.is_keepalived(n) => vec!["keepalived", "halo"],
            Node::Lb(_) => vec!["halo"],
            Node::Web(_) => vec!["nginx"],
            Node::Client => vec![],
        }
    }

    pub fn has(&self, node: Node) -> bool {
        match node {
            Node::Lb(n) => self.lbs.contains(&n),
            Node::Web(n) => self.webs.contains(&n),
            Node::Client => self.client,
        }
    }

    /// LBs holding the VIP right now, by the kernel's own view.
    pub fn holders(&self) -> Vec<u8> {
        self.lbs
            .iter()
            .copied()
            .filter(|&n| sys::ipv4_addrs(&Node::Lb(n).netns(), IFACE).contains(&VIP))
            .collect()
    }

    /// ` --dir X` when the lab is not in the default place, for printed hints.
    pub(super) fn dir_flag(&self) -> String {
        dir_flag(&self.dir)
    }
}

pub(super) fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(plan::DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// The lab's namespaces: exactly `halo-sw` and `halo-<node>` names, so
/// another tool's `halo-something` namespace is never touched.
pub(super) fn lab_namespaces() -> Result<Vec<String>> {
    Ok(sys::netns_with_prefix(PREFIX)?
        .into_iter()
        .filter(|ns| plan::is_lab_netns(ns))
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
    let ns = node.netns();
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
        Node::Lb(n) => {
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
            let conf = own.join("halo.toml");
            ensure_exists(&conf)?;
            let args = [OsStr::new("run"), OsStr::new("--config"), conf.as_os_str()];
            let log = own.join("halo.log");
            let pid = sys::spawn_detached(&ns, &exe, &args, &log)?;
            fs::write(own.join("halo.pid"), format!("{pid}\n"))?;
            started.push(Started {
                node,
                name: "halo",
                pid,
                log,
            });
        }
        Node::Client => bail!("the client runs no daemon"),
    }
    Ok(started)
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

/// Run `f` in the client namespace.
pub(super) fn from_client<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    sys::in_netns(&Node::Client.netns(), f)
}

pub(super) fn vip_url() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// Each backend's `/health`, asked directly from the client.
pub(super) fn backend_health(webs: &[u8]) -> Result<Vec<(u8, Result<Reply, probe::ProbeError>)>> {
    let webs = webs.to_vec();
    from_client(move || {
        webs.iter()
            .map(|&w| {
                let addr = SocketAddr::from((Node::Web(w).addr(), 80));
                (w, probe::get(addr, "/health", Duration::from_millis(500)))
            })
            .collect()
    })
}

pub(super) fn port_state(node: Node) -> String {
    let out = sys::ip(&[
        "-n",
        SWITCH_NS,
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

/// The control socket of an LB's halo: its halo.toml's `control_socket`
/// (students may edit it), else where the lab puts it.
pub(super) fn control_socket(lab: &Running, lb: u8) -> PathBuf {
    let own = lab.node_dir(Node::Lb(lb));
    crate::config::load(&own.join("halo.toml"))
        .map(|c| c.global.control_socket)
        .unwrap_or_else(|_| own.join("halo.sock"))
}

/// What an LB's halo says about itself over its control socket, if it
/// answers. (A Unix socket path works across network namespaces.)
pub(super) fn snapshot(lab: &Running, lb: u8) -> Option<Snapshot> {
    let req = control::Request::Status;
    control::request(&control_socket(lab, lb), &req, Duration::from_secs(2))
        .ok()?
        .status
}
