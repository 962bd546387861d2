//! The system side of `halo lab up --bgp` ([`super::bgp`] is the plan):
//! writing the FRR files (owned by the frr user), the router's and the
//! client's links, starting FRR's daemons in a node, reading the router's
//! route, waiting for the lab to converge and printing its summary.

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::bgp::{self, ANYCAST, CLIENT, CLIENT_NET, FRR_DAEMONS, FRR_DIR, FRR_SUBDIR};
use super::plan::{Node, Spec, IFACE};
use super::probe;
use super::running::{backend_health, Running, Started};
use super::sys::{self, Tool};
use super::up::not_all_up;

pub(super) const FRR: Tool = Tool {
    command: "vtysh",
    package: "frr",
};

/// `DIR/NODE/frr`.
pub(super) fn frr_dir(dir: &Path, node: Node) -> PathBuf {
    dir.join(node.to_string()).join(FRR_SUBDIR)
}

/// Write (or, in a lab without BGP, remove) a node's FRR files. The daemons
/// drop to the frr user before reading them and write their sockets and pid
/// files beside them, so the directory is frr's.
pub(super) fn write_frr_files(spec: &Spec, dir: &Path, node: Node) -> Result<()> {
    let own = frr_dir(dir, node);
    let files = bgp::frr_files(spec, node);
    if !spec.bgp || files.is_empty() {
        if own.exists() {
            fs::remove_dir_all(&own).with_context(|| format!("removing {}", own.display()))?;
        }
        return Ok(());
    }
    fs::create_dir_all(&own).with_context(|| format!("creating {}", own.display()))?;
    for (name, text) in files {
        let path = own.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    for log in FRR_DAEMONS.map(|d| format!("{d}.log")) {
        let _ = fs::remove_file(own.join(log));
    }
    sys::run(
        "chown",
        [OsStr::new("-R"), OsStr::new("frr:frr"), own.as_os_str()],
    )
    .context("giving the FRR files to the frr user (is the frr package installed?)")?;
    Ok(())
}

/// What a BGP lab needs beyond the switch: the router forwards (and hashes
/// flows on ports too, as routers do, so one client's connections spread
/// over the LBs: the kernel's default hashes on addresses only), the client
/// hangs off the router, and the LBs route the client's network back
/// through it (and so do the backends).
pub(super) fn links(spec: &Spec, node: Node, ns: &str) -> Result<()> {
    if !spec.bgp {
        return Ok(());
    }
    match node {
        Node::Router => {
            for set in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.fib_multipath_hash_policy=1",
            ] {
                sys::exec_in(ns, "sysctl", &["-qw", set])?;
            }
        }
        // Backends answer the client's own probes (`lab status`) through
        // the router too.
        Node::Lb(_) | Node::Web(_) => {
            let via = bgp::router_addr().to_string();
            sys::ip(&["-n", ns, "route", "add", CLIENT_NET, "via", &via])?;
        }
        _ => {}
    }
    Ok(())
}

/// The client's cable: to the router, not the switch.
pub(super) fn client_cable(ns: &str, router_ns: &str) -> Result<()> {
    let r = bgp::ROUTER_CLIENT_IFACE;
    sys::ip(&[
        "-n", router_ns, "link", "add", r, "type", "veth", "peer", "name", IFACE, "netns", ns,
    ])?;
    let router_side = format!("{}/24", bgp::ROUTER_CLIENT_SIDE);
    sys::ip(&["-n", router_ns, "addr", "add", &router_side, "dev", r])?;
    sys::ip(&["-n", router_ns, "link", "set", r, "up"])?;
    sys::ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{CLIENT}/24"),
        "dev",
        IFACE,
    ])?;
    sys::ip(&["-n", ns, "link", "set", IFACE, "up"])?;
    let gw = bgp::ROUTER_CLIENT_SIDE.to_string();
    sys::ip(&["-n", ns, "route", "add", "default", "via", &gw])?;
    Ok(())
}

/// Does this node run FRR (its files are there)?
pub(super) fn runs_frr(lab: &Running, node: Node) -> bool {
    frr_dir(&lab.dir, node).join("bgpd.conf").exists()
}

/// Start zebra, bfdd and bgpd in the node, each with its files in
/// `DIR/NODE/frr` (sockets, pid files, log), as the frr user.
pub(super) fn start_frr(lab: &Running, node: Node) -> Result<Vec<Started>> {
    sys::require(&[FRR])?;
    let own = frr_dir(&lab.dir, node);
    let ns = lab.ns(node);
    let zsock = own.join("zserv.api");
    let mut started = Vec::new();
    for d in FRR_DAEMONS {
        let exe = Path::new(FRR_DIR).join(d);
        if !exe.exists() {
            bail!("{} is missing: install the frr package", exe.display());
        }
        let p = |f: String| own.join(f).into_os_string();
        let args = [
            "-u".into(),
            "frr".into(),
            "-g".into(),
            "frr".into(),
            "-f".into(),
            p(format!("{d}.conf")),
            "-i".into(),
            p(format!("{d}.pid")),
            "-z".into(),
            zsock.clone().into_os_string(),
            "--vty_socket".into(),
            own.clone().into_os_string(),
        ];
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let log = own.join(format!("{d}.log"));
        let pid = sys::spawn_detached(&ns, &exe, &args, &log)?;
        if d == "zebra" {
            // The others connect to zebra's socket: wait for it (they
            // would retry, but only every few seconds).
            let end = Instant::now() + Duration::from_secs(10);
            while !zsock.exists() && sys::alive(pid) && Instant::now() < end {
                thread::sleep(Duration::from_millis(20));
            }
        }
        started.push(Started {
            node,
            name: d,
            pid,
            log,
        });
    }
    Ok(started)
}

/// The LBs the router's route to the anycast address goes through now.
pub(super) fn router_lbs(lab: &Running) -> Vec<u8> {
    let out = sys::ip(&[
        "-n",
        &lab.ns(Node::Router),
        "route",
        "show",
        &format!("{ANYCAST}/32"),
    ])
    .unwrap_or_default();
    bgp::lbs_of(&bgp::next_hops(&out), &lab.lbs)
}

pub(super) fn anycast_url() -> SocketAddr {
    SocketAddr::from((ANYCAST, 80))
}

/// Wait until the router has every LB as a next hop, every backend is up
/// in every LB's view, and requests from the client through the anycast
/// address reach every backend.
pub(super) fn wait_ready(lab: &Running, daemons: &[Started], timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        super::up::all_alive(daemons)?;
        let why = match router_lbs(lab) {
            hops if hops != lab.lbs => format!(
                "the router's route to {ANYCAST} goes through {} of {} LBs ({hops:?})",
                hops.len(),
                lab.lbs.len()
            ),
            _ => match not_all_up(lab) {
                Some(why) => why,
                None => {
                    let down = backend_health(lab)?
                        .into_iter()
                        .filter(|(_, r)| !matches!(r, Ok(probe::Reply { status: 200, .. })))
                        .count();
                    let rounds = 3 * lab.webs.len() * lab.lbs.len();
                    let (_, missing) = super::up::unanswered_backends(lab, anycast_url(), rounds)?;
                    if down == 0 && missing.is_empty() {
                        return Ok(());
                    }
                    format!(
                        "{down} backends down; requests to {ANYCAST} did not reach {}",
                        missing.join(", ")
                    )
                }
            },
        };
        if Instant::now() > end {
            bail!("still waiting: {why}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

pub(super) fn print_summary(spec: &Spec, lab: &Running, took: Duration) {
    let f = lab.dir_flag();
    let c = sys::lab_cmd();
    println!(
        "halo lab is up after {:.1} s: BGP/ECMP, {} LBs announce {ANYCAST}, {} backends, files in {}",
        took.as_secs_f64(),
        spec.lbs,
        spec.backends,
        lab.dir.display()
    );
    println!();
    println!("  {:<7} {:<14} runs", "node", "address");
    println!(
        "  {:<7} {:<14} FRR bgpd (AS {}, ECMP over the LBs) + bfdd; {CLIENT_NET} on eth1",
        "router",
        bgp::router_addr().to_string(),
        bgp::ROUTER_AS
    );
    for l in spec.lbs() {
        println!(
            "  {:<7} {:<14} halo ([anycast.web] {ANYCAST} on lo + proxy) + FRR bgpd (AS {}) + bfdd",
            l.to_string(),
            l.addr().to_string(),
            bgp::LB_AS
        );
    }
    for w in spec.webs() {
        println!("  {:<7} {:<14} nginx", w.to_string(), w.addr().to_string());
    }
    println!(
        "  {:<7} {:<14} (you: {c} exec client{f} -- curl -s http://{ANYCAST}/)",
        "client",
        CLIENT.to_string()
    );
    println!();
    println!("Next, try:");
    let s2 = lab.node_dir(Node::Lb(2.min(spec.lbs))).join("halo.sock");
    for (cmd, what) in [
        (
            format!("{c} exec{f} router -- ip route show {ANYCAST}"),
            "one next hop per LB (ECMP)".to_string(),
        ),
        (
            format!("{c} curl 9{f}"),
            format!("requests through {ANYCAST}, spread by the router"),
        ),
        (
            format!("halo anycast withdraw web --socket {}", s2.display()),
            "drain an LB: its route goes, its connections finish".to_string(),
        ),
        (
            format!("{c} cut lb1{f}"),
            "a dead LB: BFD takes its route out in under a second".to_string(),
        ),
        (format!("{c} down{f}"), "remove everything".to_string()),
    ] {
        println!("  {cmd}\n      {what}");
    }
    println!();
    println!(
        "FRR: {}/router/frr/bgpd.conf, {}/lb1/frr/bgpd.conf; exercise 11 in docs/labs/.",
        lab.dir.display(),
        lab.dir.display()
    );
}

/// `halo lab status` of a BGP lab: the router's next hops, each LB's
/// daemons and anycast state (halo's view and the kernel's), the backends
/// and a request through the anycast address.
pub(super) fn status(lab: &Running) -> Result<()> {
    let hops = router_lbs(lab);
    println!(
        "  router: {ANYCAST} via {}",
        if hops.is_empty() {
            "nobody: no LB announces it, the service is down".to_string()
        } else {
            hops.iter()
                .map(|n| format!("lb{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!();
    println!(
        "  {:<5} {:<12} {:<9} {:<11} {:<7} daemons",
        "LB", "address", "cable", "halo says", "on lo"
    );
    for &n in &lab.lbs {
        let node = Node::Lb(n);
        let says = match super::running::snapshot(lab, n) {
            Some(s) => s
                .anycast
                .first()
                .map_or("-".to_string(), |a| a.state.to_uppercase()),
            None => "no answer".to_string(),
        };
        let on_lo = sys::ipv4_addrs(&lab.ns(node), "lo").contains(&ANYCAST);
        let running: Vec<String> = lab
            .daemons(node)
            .iter()
            .filter(|d| !sys::pids_named(&lab.ns(node), d).is_empty())
            .map(|d| d.to_string())
            .collect();
        println!(
            "  {:<5} {:<12} {:<9} {says:<11} {:<7} {}",
            node.to_string(),
            node.addr().to_string(),
            super::running::port_state(lab, node),
            if on_lo { "yes" } else { "no" },
            if running.is_empty() {
                "none running".to_string()
            } else {
                running.join(" ")
            }
        );
    }
    println!();
    for (w, r) in backend_health(lab)? {
        let h = match r {
            Ok(rep) if rep.status == 200 => "200 UP".to_string(),
            Ok(rep) => format!("{} DOWN", rep.status),
            Err(e) => format!("DOWN ({e})"),
        };
        println!(
            "  web{w} {:<12} /health from the client: {h}",
            Node::Web(w).addr()
        );
    }
    let r = lab.in_client(|| probe::get(anycast_url(), "/", Duration::from_secs(1)))?;
    match r {
        Ok(r) => println!(
            "\n  http://{ANYCAST}/ -> {} {}",
            r.status,
            r.server.unwrap_or_else(|| "(unknown server)".into())
        ),
        Err(e) => println!("\n  http://{ANYCAST}/ -> failed: {e}"),
    }
    Ok(())
}
