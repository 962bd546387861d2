//! The `halo lab` commands: building and tearing down the namespaces,
//! starting and signalling the daemons, and reporting what the lab is doing.
//!
//! A running lab is found from its namespaces (`halo-*`), not from a record
//! of what was started, so `down` works after a crash. The lab directory
//! holds what students read and edit (configs, logs); its pid files are a
//! courtesy: processes are always found inside their namespace by name.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::{self, Node, Peer, Spec, BRIDGE, IFACE, PREFIX, SWITCH_NS, VIP};
use super::probe::{self, Reply};
use super::sys::{self, Tool};
use crate::control;
use crate::status::Snapshot;

const IPROUTE: Tool = Tool {
    command: "ip",
    package: "iproute2",
};
const BRIDGE_TOOL: Tool = Tool {
    command: "bridge",
    package: "iproute2",
};
const SYSCTL: Tool = Tool {
    command: "sysctl",
    package: "procps",
};
const NGINX: Tool = Tool {
    command: "nginx",
    package: "nginx-light",
};
const KEEPALIVED: Tool = Tool {
    command: "keepalived",
    package: "keepalived",
};

// === the running lab ===

/// What the namespaces and the lab directory say is running.
pub struct Running {
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
    fn dir_flag(&self) -> String {
        dir_flag(&self.dir)
    }
}

fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(plan::DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// The lab's namespaces: exactly `halo-sw` and `halo-<node>` names, so
/// another tool's `halo-something` namespace is never touched.
fn lab_namespaces() -> Result<Vec<String>> {
    Ok(sys::netns_with_prefix(PREFIX)?
        .into_iter()
        .filter(|ns| {
            ns == SWITCH_NS
                || ns
                    .strip_prefix(PREFIX)
                    .is_some_and(|n| Node::parse(n).is_ok())
        })
        .collect())
}

fn parse_node(s: &str) -> Result<Node> {
    Node::parse(s).map_err(anyhow::Error::msg)
}

// === up ===

pub fn up(spec: &Spec, dir: &Path, timeout: Duration) -> Result<()> {
    let mut tools = vec![IPROUTE, BRIDGE_TOOL, SYSCTL, NGINX];
    if spec.peer == Peer::Keepalived {
        tools.push(KEEPALIVED);
    }
    sys::require(&tools)?;
    let existing = lab_namespaces()?;
    if !existing.is_empty() {
        bail!(
            "a lab is already up ({}): `halo lab down` first",
            existing.join(", ")
        );
    }
    let t0 = Instant::now();
    write_files(spec, dir)?;
    if let Err(e) = build_network(spec) {
        let _ = teardown();
        return Err(e.context("building the lab network (removed what was built)"));
    }
    let lab = Running {
        dir: dir.to_path_buf(),
        lbs: spec.lbs().map(lb_num).collect(),
        webs: (1..=spec.backends).collect(),
        client: true,
    };
    let mut daemons = Vec::new();
    for node in spec.webs().chain(spec.lbs()) {
        match start_daemons(&lab, node) {
            Ok(started) => daemons.extend(started),
            Err(e) => {
                let _ = teardown();
                return Err(e.context("starting the lab (removed what was started)"));
            }
        }
    }
    let master = wait_ready(&lab, &daemons, timeout).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\nThe lab is left running to look at: `halo lab status{f}`, logs in {d}/lb*/; \
             `halo lab down{f}` removes it.",
            f = lab.dir_flag(),
            d = dir.display()
        )
    })?;
    print_summary(spec, &lab, master, t0.elapsed());
    Ok(())
}

fn lb_num(n: Node) -> u8 {
    match n {
        Node::Lb(n) => n,
        _ => unreachable!("spec.lbs() yields LBs"),
    }
}

/// The generated configs. Rewritten on every `up`: the lab starts from a
/// known state; edits are for `reload` within one lab session.
fn write_files(spec: &Spec, dir: &Path) -> Result<()> {
    let write = |path: PathBuf, text: String| {
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    for node in spec.nodes() {
        let own = dir.join(node.to_string());
        fs::create_dir_all(&own).with_context(|| format!("creating {}", own.display()))?;
        // A new lab starts new logs (start/reload append to them).
        for log in ["halo.log", "keepalived.log", "error.log", "access.log"] {
            let _ = fs::remove_file(own.join(log));
        }
        match node {
            Node::Lb(n) => {
                write(own.join("halo.toml"), plan::halo_toml(spec, n, dir))?;
                let ka = own.join("keepalived.conf");
                if spec.is_keepalived(n) {
                    write(ka, plan::keepalived_conf(n))?;
                } else if ka.exists() {
                    fs::remove_file(&ka)?;
                }
            }
            Node::Web(n) => {
                fs::create_dir_all(own.join("tmp"))?;
                write(own.join("nginx.conf"), plan::nginx_conf(n, dir))?;
            }
            Node::Client => {}
        }
    }
    Ok(())
}

fn add_netns(ns: &str) -> Result<()> {
    sys::ip(&["netns", "add", ns])?;
    sys::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    // No duplicate address detection: IPv6 link-local addresses work at once
    // (ND and the VRRPv3 IPv6 exercises would otherwise wait for DAD).
    for k in ["all", "default"] {
        sys::exec_in(
            ns,
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{k}.accept_dad=0")],
        )?;
    }
    Ok(())
}

fn build_network(spec: &Spec) -> Result<()> {
    add_netns(SWITCH_NS)?;
    let sw = |args: &[&str]| {
        let mut all = vec!["-n", SWITCH_NS];
        all.extend_from_slice(args);
        sys::ip(&all)
    };
    sw(&["link", "add", BRIDGE, "type", "bridge"])?;
    sw(&["link", "set", BRIDGE, "up"])?;
    for node in spec.nodes() {
        let ns = node.netns();
        add_netns(&ns)?;
        let port = node.port();
        // Made in the switch namespace, the peer end moved straight into
        // the node: no interface ever appears in the root namespace.
        sw(&[
            "link", "add", &port, "type", "veth", "peer", "name", IFACE, "netns", &ns,
        ])?;
        sw(&["link", "set", &port, "master", BRIDGE])?;
        sw(&["link", "set", &port, "up"])?;
        let addr = format!("{}/{}", node.addr(), plan::PREFIX_LEN);
        sys::ip(&["-n", &ns, "addr", "add", &addr, "dev", IFACE])?;
        sys::ip(&["-n", &ns, "link", "set", IFACE, "up"])?;
    }
    Ok(())
}

/// A daemon `halo lab` started in the background.
struct Started {
    node: Node,
    name: &'static str,
    pid: u32,
    log: PathBuf,
}

/// Start what a node runs. Returns the daemons left running in the
/// background (nginx daemonises itself and is not among them).
fn start_daemons(lab: &Running, node: Node) -> Result<Vec<Started>> {
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

fn ensure_exists(p: &Path) -> Result<()> {
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
fn from_client<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    sys::in_netns(&Node::Client.netns(), f)
}

fn vip_url() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// Each backend's `/health`, asked directly from the client.
fn backend_health(webs: &[u8]) -> Result<Vec<(u8, Result<Reply, probe::ProbeError>)>> {
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

/// The last lines of a log, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until exactly one LB holds the VIP, every backend answers `/health`
/// and requests through the VIP reach every backend (so the proxy has them
/// all UP). Returns the master. Fails early if a daemon died.
fn wait_ready(lab: &Running, daemons: &[Started], timeout: Duration) -> Result<u8> {
    let end = Instant::now() + timeout;
    let mut why;
    loop {
        for d in daemons {
            if !sys::alive(d.pid) {
                bail!(
                    "{} on {} exited; the end of {}:\n{}",
                    d.name,
                    d.node,
                    d.log.display(),
                    tail(&d.log, 15)
                );
            }
        }
        let holders = lab.holders();
        let health = backend_health(&lab.webs)?;
        let down: Vec<String> = health
            .iter()
            .filter(|(_, r)| !matches!(r, Ok(Reply { status: 200, .. })))
            .map(|(w, r)| match r {
                Ok(rep) => format!("web{w} /health {}", rep.status),
                Err(e) => format!("web{w} /health: {e}"),
            })
            .collect();
        why = if holders.len() != 1 {
            format!("{} LBs hold the VIP, want 1", holders.len())
        } else if !down.is_empty() {
            down.join("; ")
        } else {
            // Round robin over UP servers: 2 rounds reach every UP backend.
            let rounds = 2 * lab.webs.len();
            let seen = from_client(move || {
                (0..rounds)
                    .filter_map(|_| probe::get(vip_url(), "/", Duration::from_millis(500)).ok())
                    .filter(|r| r.status == 200)
                    .filter_map(|r| r.server)
                    .collect::<Vec<_>>()
            })?;
            let missing: Vec<String> = lab
                .webs
                .iter()
                .map(|w| format!("web{w}"))
                .filter(|w| !seen.contains(w))
                .collect();
            if missing.is_empty() {
                // The backups' view too: a failover must find every backend UP.
                match not_all_up(lab) {
                    None => return Ok(holders[0]),
                    Some(why) => why,
                }
            } else {
                format!(
                    "requests to the VIP did not reach {} (got {:?})",
                    missing.join(", "),
                    seen
                )
            }
        };
        if Instant::now() > end {
            bail!("still waiting: {why}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Why not every LB's halo reports every backend UP yet, if so.
fn not_all_up(lab: &Running) -> Option<String> {
    for &n in &lab.lbs {
        let Some(snap) = snapshot(lab, n) else {
            return Some(format!(
                "lb{n}'s halo does not answer on its control socket"
            ));
        };
        let down: Vec<&str> = snap
            .proxy
            .iter()
            .flat_map(|p| p.servers.iter())
            .filter(|s| !s.healthy)
            .map(|s| s.name.as_str())
            .collect();
        if !down.is_empty() {
            return Some(format!("lb{n} does not see {} UP yet", down.join(", ")));
        }
    }
    None
}

fn print_summary(spec: &Spec, lab: &Running, master: u8, took: Duration) {
    let f = lab.dir_flag();
    println!(
        "halo lab is up after {:.1} s: {} LBs, {} backends, VIP {VIP}, files in {}",
        took.as_secs_f64(),
        spec.lbs,
        spec.backends,
        lab.dir.display()
    );
    println!();
    println!("  {:<7} {:<12} {:<40} state", "node", "address", "runs");
    for l in spec.lbs() {
        let n = lb_num(l);
        let runs = if spec.is_keepalived(n) {
            format!("keepalived VRRP (prio {}) + halo proxy", plan::priority(n))
        } else {
            format!("halo VRRP (prio {}) + proxy", plan::priority(n))
        };
        let state = if n == master {
            format!("MASTER, holds {VIP}")
        } else {
            "BACKUP".to_string()
        };
        println!(
            "  {:<7} {:<12} {runs:<40} {state}",
            l.to_string(),
            l.addr().to_string()
        );
    }
    for w in spec.webs() {
        println!(
            "  {:<7} {:<12} {:<40} UP",
            w.to_string(),
            w.addr().to_string(),
            "nginx"
        );
    }
    println!(
        "  {:<7} {:<12} {:<40}",
        "client",
        Node::Client.addr().to_string(),
        "(you: halo lab curl / exec client)"
    );
    println!("  {:<7} {:<12} bridge {BRIDGE}", "switch", SWITCH_NS);
    if spec.peer == Peer::Keepalived {
        println!();
        println!(
            "  lb{} runs Debian's keepalived for VRRP (the same vrid {}, VRRPv3) and halo with only",
            spec.lbs,
            plan::VRID
        );
        println!("  a [proxy] section: keepalived holds the VIP, halo serves what arrives on it.");
    }
    println!();
    println!("Next, try:");
    let m = Node::Lb(master);
    let tips = [
        (
            format!("halo lab curl 9{f}"),
            "requests through the VIP, round robin over the webs".to_string(),
        ),
        (
            format!("halo lab watch{f}"),
            "live view: master, traffic, failures (Ctrl-C to quit)".to_string(),
        ),
        (
            format!("halo lab kill {m}{f}"),
            "crash the master and see the VIP move".to_string(),
        ),
        (
            format!("halo lab stop web1{f}"),
            "a backend fails: health checks take it out".to_string(),
        ),
        (
            format!("halo lab cut lbs{f}"),
            "partition the LBs: split brain (heal with `heal lbs`)".to_string(),
        ),
        (
            format!("halo lab exec {m} -- tcpdump -ni eth0 vrrp"),
            "the adverts on the wire".to_string(),
        ),
        (
            format!("halo lab status{f}"),
            "who is master, backends' health".to_string(),
        ),
        (format!("halo lab down{f}"), "remove everything".to_string()),
    ];
    for (cmd, what) in tips {
        println!("  {cmd:<46} {what}");
    }
    println!();
    println!(
        "Configs: {}/lb1/halo.toml (edit, then `halo lab reload lb1{f}`); exercises in docs/labs/.",
        lab.dir.display()
    );
}

// === down ===

/// Kill every process in the lab's namespaces, delete the namespaces, and
/// remove runtime files (pid files, sockets) from the lab directory.
/// Idempotent, and needs nothing recorded.
pub fn down(dir: &Path) -> Result<()> {
    sys::require(&[IPROUTE])?;
    let (namespaces, killed) = teardown()?;
    // Runtime files only; configs and logs stay for students to read.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let is_node = e
                .file_name()
                .to_str()
                .is_some_and(|n| Node::parse(n).is_ok());
            for f in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if is_node && (name.ends_with(".pid") || name.ends_with(".sock")) {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
    }
    if namespaces == 0 {
        println!("no lab was up; nothing to remove");
    } else {
        println!(
            "removed {namespaces} namespaces and {killed} processes; configs and logs stay in {}",
            dir.display()
        );
    }
    Ok(())
}

/// Returns (namespaces removed, processes killed).
fn teardown() -> Result<(usize, usize)> {
    let namespaces = lab_namespaces()?;
    let mut pids = Vec::new();
    for ns in &namespaces {
        pids.extend(sys::netns_pids(ns));
    }
    for &p in &pids {
        sys::signal(p, libc::SIGKILL);
    }
    if !sys::wait_gone(&pids, Duration::from_secs(10)) {
        bail!("some lab processes survived SIGKILL for 10 s: {pids:?}");
    }
    for ns in &namespaces {
        // Removing the namespace removes its veth end, and the switch's.
        if let Err(e) = sys::ip(&["netns", "del", ns]) {
            if sys::netns_exists(ns) {
                return Err(e);
            }
        }
    }
    Ok((namespaces.len(), pids.len()))
}

// === status ===

fn port_state(node: Node) -> String {
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
fn configured_priority(lab: &Running, lb: u8) -> Option<u8> {
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
fn control_socket(lab: &Running, lb: u8) -> PathBuf {
    let own = lab.node_dir(Node::Lb(lb));
    crate::config::load(&own.join("halo.toml"))
        .map(|c| c.global.control_socket)
        .unwrap_or_else(|_| own.join("halo.sock"))
}

/// What an LB's halo says about itself over its control socket, if it
/// answers. (A Unix socket path works across network namespaces.)
fn snapshot(lab: &Running, lb: u8) -> Option<Snapshot> {
    let req = control::Request::Status;
    control::request(&control_socket(lab, lb), &req, Duration::from_secs(2))
        .ok()?
        .status
}

pub fn status(dir: &Path) -> Result<()> {
    let lab = Running::find(dir)?;
    let holders = lab.holders();
    let snaps: BTreeMap<u8, Snapshot> = lab
        .lbs
        .iter()
        .filter_map(|&n| snapshot(&lab, n).map(|s| (n, s)))
        .collect();
    println!(
        "  {:<5} {:<12} {:<28} {:<9} {:<13} {:<10} the kernel's view",
        "LB", "address", "daemon", "cable", "priority", "halo says"
    );
    for &n in &lab.lbs {
        let node = Node::Lb(n);
        let mut running = Vec::new();
        for d in lab.daemons(node) {
            if let Some(p) = sys::pids_named(&node.netns(), d).iter().min() {
                running.push(format!("{d} {p}"));
            }
        }
        let daemon = if running.is_empty() {
            "not running".to_string()
        } else {
            running.join(", ")
        };
        let vrrp = snaps.get(&n).and_then(|s| s.vrrp.first());
        // The effective priority from halo itself, else the configured one.
        let prio = match vrrp {
            Some(v) if v.effective_priority != v.base_priority => {
                format!("{} (of {})", v.effective_priority, v.base_priority)
            }
            Some(v) => v.effective_priority.to_string(),
            None => configured_priority(&lab, n).map_or("?".into(), |p| format!("{p} (conf)")),
        };
        let says = match (vrrp, lab.is_keepalived(n)) {
            (Some(v), _) => v.state.clone(),
            (None, true) => "keepalived".into(),
            (None, false) => "-".into(),
        };
        let state = if holders.contains(&n) && running.is_empty() {
            // SIGKILL leaves the address: nothing was left to remove it.
            format!("STALE: {VIP} still on eth0, its daemon is dead")
        } else if holders.contains(&n) {
            format!("holds {VIP}")
        } else {
            "-".into()
        };
        println!(
            "  {:<5} {:<12} {daemon:<28} {:<9} {prio:<13} {says:<10} {state}",
            node.to_string(),
            node.addr().to_string(),
            port_state(node)
        );
        if let Some(v) = vrrp {
            if v.effective_priority != v.base_priority && !v.priority_reason.is_empty() {
                println!("        priority {}", v.priority_reason);
            }
        }
    }
    match holders.len() {
        0 => println!("  no LB holds {VIP}: the service is down"),
        1 => {}
        _ => println!(
            "  SPLIT BRAIN: {} each hold {VIP}",
            holders
                .iter()
                .map(|n| format!("lb{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    println!();
    // Each LB's health-check view of each backend, beside the client's.
    let mut head = format!("  {:<5} {:<12} {:<9}", "web", "address", "cable");
    for n in snaps.keys() {
        head.push_str(&format!(" {:<9}", format!("lb{n} sees")));
    }
    println!("{head} /health from the client");
    if lab.client {
        for (w, r) in backend_health(&lab.webs)? {
            let node = Node::Web(w);
            let h = match r {
                Ok(rep) if rep.status == 200 => "200 UP".to_string(),
                Ok(rep) => format!("{} DOWN", rep.status),
                Err(e) => format!("DOWN ({e})"),
            };
            let mut line = format!(
                "  {:<5} {:<12} {:<9}",
                node.to_string(),
                node.addr().to_string(),
                port_state(node)
            );
            for snap in snaps.values() {
                let seen = snap
                    .proxy
                    .iter()
                    .flat_map(|p| p.servers.iter())
                    .find(|sv| sv.name == node.to_string())
                    .map_or("-".to_string(), |sv| {
                        if !sv.admin.is_empty() && sv.admin != "enabled" {
                            sv.admin.to_uppercase()
                        } else if sv.healthy {
                            "UP".into()
                        } else {
                            "DOWN".into()
                        }
                    });
                line.push_str(&format!(" {seen:<9}"));
            }
            println!("{line} {h}");
        }
        let vip = from_client(|| probe::get(vip_url(), "/", Duration::from_secs(1)))?;
        match vip {
            Ok(r) => println!(
                "\n  http://{VIP}/ -> {} {}",
                r.status,
                r.server.unwrap_or_else(|| "(unknown server)".into())
            ),
            Err(e) => println!("\n  http://{VIP}/ -> failed: {e}"),
        }
    }
    Ok(())
}

// === curl ===

pub fn curl(n: u32, dir: &Path) -> Result<ExitCode> {
    let lab = Running::find(dir)?;
    if !lab.client {
        bail!("the lab has no client namespace ({})", Node::Client.netns());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = thread::spawn(move || {
        from_client(move || {
            for i in 1..=n {
                let r = probe::get(vip_url(), "/", Duration::from_secs(2));
                if tx.send((i, r)).is_err() {
                    break;
                }
            }
        })
    });
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed = 0;
    for (i, r) in rx {
        match r {
            Ok(rep) => {
                let who = rep.server.unwrap_or_else(|| "?".into());
                println!("{i:>4}  {}  {who}", rep.status);
                if rep.status == 200 {
                    *counts.entry(who).or_default() += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("{i:>4}  ---  failed: {e}");
                failed += 1;
            }
        }
    }
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the request thread panicked"))??;
    let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.push(format!("failed {failed}"));
    println!("{n} requests to http://{VIP}/: {}", parts.join(", "));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

// === kill / stop / start ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Stop,
    Start,
}

pub fn signal_node(target: &str, action: Action, dir: &Path) -> Result<()> {
    let lab = Running::find(dir)?;
    let node = parse_node(target)?;
    if !lab.has(node) {
        bail!("{node} is not part of this lab");
    }
    let names = lab.daemons(node);
    if names.is_empty() {
        bail!("{node} runs no daemon to {action:?}");
    }
    let ns = node.netns();
    let pids: Vec<u32> = names.iter().flat_map(|d| sys::pids_named(&ns, d)).collect();
    match action {
        Action::Start => {
            if !pids.is_empty() {
                println!("{node}: {} already running", names.join(" + "));
                return Ok(());
            }
            let _ = start_daemons(&lab, node)?;
            println!("{node}: started {}", names.join(" + "));
        }
        Action::Kill | Action::Stop => {
            if pids.is_empty() {
                println!("{node}: {} not running", names.join(" + "));
                return Ok(());
            }
            let (sig, how) = if action == Action::Kill {
                (libc::SIGKILL, "killed (SIGKILL)")
            } else {
                (libc::SIGTERM, "stopped (SIGTERM)")
            };
            for &p in &pids {
                sys::signal(p, sig);
            }
            if !sys::wait_gone(&pids, Duration::from_secs(10)) {
                bail!(
                    "{node}: {} still running 10 s after the signal",
                    names.join(" + ")
                );
            }
            if let Node::Lb(_) = node {
                let _ = fs::remove_file(lab.node_dir(node).join("halo.pid"));
            }
            println!("{node}: {} {how}", names.join(" + "));
        }
    }
    Ok(())
}

// === cut / heal ===

pub fn cable(target: &str, connect: bool, dir: &Path) -> Result<()> {
    let lab = Running::find(dir)?;
    if target == "multicast" {
        // The switch stops flooding multicast (VRRP's 224.0.0.18) to the
        // LBs' ports, as some clouds and switches do; broadcast (ARP) and
        // unicast still pass. halo then needs `unicast_peers`.
        sys::require(&[BRIDGE_TOOL])?;
        let flag = if connect { "on" } else { "off" };
        for &n in &lab.lbs {
            let port = Node::Lb(n).port();
            sys::exec_in(
                SWITCH_NS,
                "bridge",
                &["link", "set", "dev", &port, "mcast_flood", flag],
            )?;
        }
        if connect {
            println!("the switch forwards multicast to the LBs again");
        } else {
            println!(
                "the switch no longer forwards multicast to the LBs (VRRP adverts to 224.0.0.18 \
                 are lost; unicast and ARP pass); `halo lab heal multicast{}` undoes it",
                lab.dir_flag()
            );
        }
        return Ok(());
    }
    if target == "lbs" {
        // Port isolation: isolated ports cannot reach each other but reach
        // every other port, so the LBs stop hearing each other's adverts
        // while clients and backends still reach both.
        sys::require(&[BRIDGE_TOOL])?;
        let flag = if connect { "off" } else { "on" };
        for &n in &lab.lbs {
            let port = Node::Lb(n).port();
            sys::exec_in(
                SWITCH_NS,
                "bridge",
                &["link", "set", "dev", &port, "isolated", flag],
            )?;
        }
        if connect {
            println!("LBs can hear each other again");
        } else {
            println!(
                "LBs partitioned from each other (clients and backends still reach them all); \
                 `halo lab heal lbs{}` undoes it",
                lab.dir_flag()
            );
        }
        return Ok(());
    }
    let node =
        parse_node(target).map_err(|e| e.context("or `lbs` for a partition between the LBs"))?;
    if !lab.has(node) {
        bail!("{node} is not part of this lab");
    }
    let state = if connect { "up" } else { "down" };
    sys::ip(&["-n", SWITCH_NS, "link", "set", "dev", &node.port(), state])?;
    println!(
        "{node}: cable {}",
        if connect {
            "plugged back in"
        } else {
            "unplugged (switch port down)"
        }
    );
    Ok(())
}

// === exec ===

pub fn exec(target: &str, cmd: &[String]) -> Result<ExitCode> {
    sys::require(&[IPROUTE])?;
    let ns = if target == "switch" || target == "sw" {
        SWITCH_NS.to_string()
    } else {
        parse_node(target)
            .map_err(|e| e.context("or `switch`"))?
            .netns()
    };
    if !sys::netns_exists(&ns) {
        bail!("namespace {ns} does not exist: is the lab up?");
    }
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(cmd)
        .status()
        .with_context(|| format!("running {cmd:?} in {ns}"))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

// === reload ===

pub fn reload(target: &str, dir: &Path) -> Result<()> {
    let lab = Running::find(dir)?;
    let node = parse_node(target)?;
    let Node::Lb(n) = node else {
        bail!("reload applies to LBs (lb1..); for a backend use stop + start");
    };
    if !lab.has(node) {
        bail!("{node} is not part of this lab");
    }
    let own = lab.node_dir(node);
    let conf = own.join("halo.toml");
    ensure_exists(&conf)?;
    // Check before touching the running halo: a typo must not take the LB down.
    if let Err(errs) = crate::config::load(&conf) {
        bail!("{errs}\n{node} keeps running its old configuration");
    }
    let ns = node.netns();
    if lab.is_keepalived(n) {
        for p in sys::pids_named(&ns, "keepalived") {
            sys::signal(p, libc::SIGHUP);
        }
        println!("{node}: keepalived reloaded (SIGHUP)");
    }
    // Live reload over the control socket: halo applies the difference
    // (VRRP keeps its state unless the instance itself changed).
    let socket = control_socket(&lab, n);
    match control::request(&socket, &control::Request::Reload, Duration::from_secs(10)) {
        Ok(resp) if resp.ok => {
            let msg = resp.message.trim();
            println!(
                "{node}: {}",
                if msg.is_empty() { "halo reloaded" } else { msg }
            );
            return Ok(());
        }
        Ok(resp) => bail!("{node}: halo refused the reload: {}", resp.message),
        Err(e) if !sys::pids_named(&ns, "halo").is_empty() => {
            bail!("{node}: halo is running but its control socket does not answer: {e:#}")
        }
        Err(_) => {}
    }
    // halo is not running: start it with the new file.
    let exe = std::env::current_exe()?;
    let args = [OsStr::new("run"), OsStr::new("--config"), conf.as_os_str()];
    let pid = sys::spawn_detached(&ns, &exe, &args, &own.join("halo.log"))?;
    fs::write(own.join("halo.pid"), format!("{pid}\n"))?;
    println!(
        "{node}: halo was not running; started it with {} (pid {pid})",
        conf.display()
    );
    Ok(())
}
