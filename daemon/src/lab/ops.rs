//! The commands run against a lab that is up: `status`, `curl`,
//! `kill`/`stop`/`start`, `cut`/`heal`, `exec`, `reload`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Result};

use super::plan::{self, Node, VIP};
use super::probe;
use super::running::*;
use super::sys::{self, Tool};
use super::Which;
use crate::control;
use crate::telemetry::status::Snapshot;

// === status ===

/// Active-active (`up --vips`): the VIPs of every instance after the first,
/// as the halos report them, with their holders by the kernel's view.
fn other_vips(lab: &Running, snaps: &BTreeMap<u8, Snapshot>) {
    let mut extra: Vec<(String, std::net::Ipv4Addr)> = Vec::new();
    for s in snaps.values() {
        for v in s.vrrp.iter().skip(1) {
            for a in &v.vips {
                let ip = a.split('/').next().and_then(|a| a.parse().ok());
                if let Some(ip) = ip.filter(|&ip| ip != VIP) {
                    if !extra.contains(&(v.name.clone(), ip)) {
                        extra.push((v.name.clone(), ip));
                    }
                }
            }
        }
    }
    extra.sort();
    for (name, ip) in extra {
        let h = lab.holders_of(ip);
        let who = match h.len() {
            0 => "nobody: this VIP is down".to_string(),
            1 => format!("lb{}", h[0]),
            _ => format!(
                "{} (SPLIT BRAIN)",
                h.iter()
                    .map(|n| format!("lb{n}"))
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        };
        println!("  {name}: {ip} held by {who}");
    }
}

pub fn status(which: &Which) -> Result<()> {
    let lab = Running::find(which)?;
    if lab.router {
        return super::bgp_run::status(&lab);
    }
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
            if let Some(p) = sys::pids_named(&lab.ns(node), d).iter().min() {
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
            (Some(v), _) => v.state.to_string(),
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
            port_state(&lab, node)
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
    other_vips(&lab, &snaps);
    println!();
    // Each LB's health-check view of each backend, beside the client's.
    let mut head = format!("  {:<5} {:<12} {:<9}", "web", "address", "cable");
    for n in snaps.keys() {
        head.push_str(&format!(" {:<9}", format!("lb{n} sees")));
    }
    println!("{head} /health from the client");
    if lab.client {
        for (w, r) in backend_health(&lab)? {
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
                port_state(&lab, node)
            );
            for snap in snaps.values() {
                let seen = snap
                    .proxy
                    .iter()
                    .flat_map(|p| p.servers.iter())
                    .find(|sv| sv.name == node.to_string())
                    .map_or("-".to_string(), |sv| {
                        if sv.admin != crate::health::AdminState::Enabled {
                            sv.admin.as_str().to_uppercase()
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
        let url = lab.service_url();
        let vip = lab.in_client(move || probe::get(url, "/", Duration::from_secs(1)))?;
        match vip {
            Ok(r) => println!(
                "\n  http://{}/ -> {} {}",
                url.ip(),
                r.status,
                r.server.unwrap_or_else(|| "(unknown server)".into())
            ),
            Err(e) => println!("\n  http://{}/ -> failed: {e}", url.ip()),
        }
    }
    Ok(())
}

// === list ===

pub(super) fn list() -> Result<()> {
    sys::require(&[IPROUTE])?;
    let mut labs: BTreeMap<Option<String>, (bool, Vec<Node>)> = BTreeMap::new();
    for ns in sys::netns_with_prefix(plan::PREFIX)? {
        if let Some((name, node)) = plan::lab_of_netns(&ns) {
            let entry = labs.entry(name).or_default();
            match node {
                Some(n) => entry.1.push(n),
                None => entry.0 = true,
            }
        }
    }
    if labs.is_empty() {
        println!("no lab is up");
        return Ok(());
    }
    println!("  {:<14} {:<7} nodes", "lab", "switch");
    for (name, (switch, mut nodes)) in labs {
        nodes.sort();
        let nodes: Vec<String> = nodes.iter().map(Node::to_string).collect();
        println!(
            "  {:<14} {:<7} {}",
            name.as_deref().unwrap_or("(default)"),
            if switch { "yes" } else { "missing" },
            nodes.join(" ")
        );
    }
    let c = sys::lab_cmd();
    println!("\n`{c} down --name NAME` removes a named lab, `{c} down` the default one.");
    Ok(())
}

// === curl ===

pub(super) fn curl(n: u32, which: &Which) -> Result<ExitCode> {
    let lab = Running::find(which)?;
    if !lab.client {
        bail!("the lab has no client namespace ({})", lab.ns(Node::Client));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let client = lab.ns(Node::Client);
    let url = lab.service_url();
    let worker = thread::spawn(move || {
        sys::in_netns(&client, move || {
            for i in 1..=n {
                let r = probe::get(url, "/", Duration::from_secs(2));
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
    println!("{n} requests to http://{}/: {}", url.ip(), parts.join(", "));
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

pub(super) fn signal_node(target: &str, action: Action, which: &Which) -> Result<()> {
    let lab = Running::find(which)?;
    let node = parse_node(target)?;
    if !lab.has(node) {
        bail!("{node} is not part of this lab");
    }
    let names = lab.daemons(node);
    if names.is_empty() {
        bail!("{node} runs no daemon to {action:?}");
    }
    let ns = lab.ns(node);
    let pids: Vec<u32> = names.iter().flat_map(|d| sys::pids_named(&ns, d)).collect();
    match action {
        Action::Start => {
            if !pids.is_empty() {
                println!("{node}: {} already running", names.join(" + "));
                return Ok(());
            }
            let tools: Vec<Tool> = names
                .iter()
                .filter_map(|d| match *d {
                    "nginx" => Some(NGINX),
                    "keepalived" => Some(KEEPALIVED),
                    _ => None,
                })
                .collect();
            sys::require(&tools)?;
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

/// `bridge link set dev PORT OPTION VALUE` on every LB's switch port.
fn set_lb_ports(lab: &Running, option: &str, value: &str) -> Result<()> {
    sys::require(&[BRIDGE_TOOL])?;
    let switch = lab.names.switch();
    for &n in &lab.lbs {
        let port = Node::Lb(n).port();
        sys::exec_in(
            &switch,
            "bridge",
            &["link", "set", "dev", &port, option, value],
        )?;
    }
    Ok(())
}

pub(super) fn cable(target: &str, connect: bool, which: &Which) -> Result<()> {
    let lab = Running::find(which)?;
    if target == "multicast" {
        // The switch stops flooding multicast (VRRP's 224.0.0.18) to the
        // LBs' ports, as some clouds and switches do; broadcast (ARP) and
        // unicast still pass. halo then needs `unicast_peers`.
        set_lb_ports(&lab, "mcast_flood", if connect { "on" } else { "off" })?;
        if connect {
            println!("the switch forwards multicast to the LBs again");
        } else {
            println!(
                "the switch no longer forwards multicast to the LBs (VRRP adverts to 224.0.0.18 \
                 are lost; unicast and ARP pass); `{} heal multicast{}` undoes it",
                sys::lab_cmd(),
                lab.dir_flag()
            );
        }
        return Ok(());
    }
    if target == "lbs" {
        // Port isolation: isolated ports cannot reach each other but reach
        // every other port, so the LBs stop hearing each other's adverts
        // while clients and backends still reach both.
        set_lb_ports(&lab, "isolated", if connect { "off" } else { "on" })?;
        if connect {
            println!("LBs can hear each other again");
        } else {
            println!(
                "LBs partitioned from each other (clients and backends still reach them all); \
                 `{} heal lbs{}` undoes it",
                sys::lab_cmd(),
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
    sys::ip(&[
        "-n",
        &lab.names.switch(),
        "link",
        "set",
        "dev",
        &node.port(),
        state,
    ])?;
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

pub(super) fn exec(target: &str, cmd: &[String], which: &Which) -> Result<ExitCode> {
    sys::require(&[IPROUTE])?;
    let names = &which.names;
    let ns = if target == "switch" || target == "sw" {
        names.switch()
    } else {
        names.ns(parse_node(target).map_err(|e| e.context("or `switch`"))?)
    };
    if !sys::netns_exists(&ns) {
        bail!(
            "namespace {ns} does not exist: is the lab up? (`{} up{}`)",
            sys::lab_cmd(),
            names.flag()
        );
    }
    // Replace this process (exec, not spawn): `ip netns exec` execs the
    // command in turn, so its pid, signals and exit status are the
    // command's own. Tests start daemons this way and signal them by pid.
    let err = Command::new(sys::which("ip").unwrap_or_else(|| "ip".into()))
        .args(["netns", "exec", &ns])
        .args(cmd)
        .exec();
    Err(anyhow::Error::new(err).context(format!("running {cmd:?} in {ns}")))
}

// === reload ===

pub(super) fn reload(target: &str, which: &Which) -> Result<()> {
    let lab = Running::find(which)?;
    let node = parse_node(target)?;
    let Node::Lb(n) = node else {
        bail!("reload applies to LBs (lb1..); for a backend use stop + start");
    };
    if !lab.has(node) {
        bail!("{node} is not part of this lab");
    }
    let own = lab.node_dir(node);
    let conf = own.join("halo.toml");
    let ns = lab.ns(node);
    if lab.is_keepalived(n) && !lab.runs_halo(n) {
        for p in sys::pids_named(&ns, "keepalived") {
            sys::signal(p, libc::SIGHUP);
        }
        println!("{node}: keepalived reloaded (SIGHUP)");
        return Ok(());
    }
    ensure_exists(&conf)?;
    // Check before touching the running halo: a typo must not take the LB down.
    if let Err(errs) = crate::config::load(&conf) {
        bail!("{errs}\n{node} keeps running its old configuration");
    }
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
    let started = start_halo(&lab, n, &exe)?;
    println!(
        "{node}: halo was not running; started it with {} (pid {})",
        conf.display(),
        started.pid
    );
    Ok(())
}
