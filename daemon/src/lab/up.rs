//! `halo lab up` and `halo lab down`: writing the configs, building the
//! namespaces, veths and bridge, starting the daemons and waiting for the
//! lab to converge; and removing all of it again.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::{self, Names, Node, Peer, Spec, BRIDGE, IFACE, VIP};
use super::probe::{self, Reply};
use super::running::*;
use super::sys;
use super::Which;

// === up ===

/// Build the lab; with `wait`, also start every node and wait (at most
/// that long) for it to converge. Without, start nothing (`--no-start`).
pub fn up(spec: &Spec, which: &Which, wait: Option<Duration>) -> Result<()> {
    let (dir, names) = (which.dir.as_path(), &which.names);
    // What `--no-start` does not start it does not need (yet): `start`
    // checks for nginx and keepalived when it starts them.
    let mut tools = vec![IPROUTE, BRIDGE_TOOL];
    if spec.backends > 0 && wait.is_some() {
        tools.push(NGINX);
    }
    if spec.peer == Peer::Keepalived && wait.is_some() {
        tools.push(KEEPALIVED);
    }
    if spec.l4.is_some() {
        tools.push(NFT);
    }
    if spec.bgp {
        tools.push(super::bgp_run::FRR);
    }
    sys::require(&tools)?;
    let existing = lab_namespaces(names)?;
    if !existing.is_empty() {
        bail!(
            "a lab is already up ({}): `{} down{}` first",
            existing.join(", "),
            sys::lab_cmd(),
            names.flag()
        );
    }
    let t0 = Instant::now();
    write_files(spec, dir)?;
    if let Err(e) = build_network(spec, names) {
        let _ = teardown(names);
        return Err(e.context("building the lab network (removed what was built)"));
    }
    let lab = Running {
        dir: dir.to_path_buf(),
        names: names.clone(),
        lbs: spec.lbs().map(lb_num).collect(),
        webs: (1..=spec.backends).collect(),
        client: true,
        router: spec.bgp,
    };
    let Some(timeout) = wait else {
        println!(
            "halo lab network is up ({} LBs, {} backends, client, switch {}); nothing started.\n\
             Files in {}: edit them, then `{} start NODE{}` for each node.",
            spec.lbs,
            spec.backends,
            names.switch(),
            dir.display(),
            sys::lab_cmd(),
            lab.dir_flag()
        );
        return Ok(());
    };
    let mut daemons = Vec::new();
    let router = spec.bgp.then_some(Node::Router);
    for node in spec.webs().chain(router).chain(spec.lbs()) {
        match start_daemons(&lab, node) {
            Ok(started) => daemons.extend(started),
            Err(e) => {
                let _ = teardown(names);
                return Err(e.context("starting the lab (removed what was started)"));
            }
        }
    }
    if spec.bgp {
        super::bgp_run::wait_ready(&lab, &daemons, timeout).map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\nThe lab is left running to look at: logs in {d}/*/ and {d}/*/frr/; \
                 `{c} down{f}` removes it.",
                c = sys::lab_cmd(),
                f = lab.dir_flag(),
                d = dir.display()
            )
        })?;
        super::bgp_run::print_summary(spec, &lab, t0.elapsed());
        return Ok(());
    }
    let master = wait_ready(&lab, &spec.vip_addrs(), &daemons, timeout).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\nThe lab is left running to look at: `{c} status{f}`, logs in {d}/lb*/; \
             `{c} down{f}` removes it.",
            c = sys::lab_cmd(),
            f = lab.dir_flag(),
            d = dir.display()
        )
    })?;
    print_summary(spec, &lab, master, t0.elapsed());
    Ok(())
}

pub(super) fn lb_num(n: Node) -> u8 {
    match n {
        Node::Lb(n) => n,
        _ => unreachable!("spec.lbs() yields LBs"),
    }
}

/// The generated configs. Rewritten on every `up`: the lab starts from a
/// known state; edits are for `reload` within one lab session.
pub(super) fn write_files(spec: &Spec, dir: &Path) -> Result<()> {
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
                let halo = own.join("halo.toml");
                match plan::halo_toml(spec, n) {
                    Some(text) => write(halo, text)?,
                    None if halo.exists() => fs::remove_file(&halo)?,
                    None => {}
                }
                let ka = own.join("keepalived.conf");
                if spec.is_keepalived(n) {
                    write(ka, plan::keepalived_conf(spec, n))?;
                } else if ka.exists() {
                    fs::remove_file(&ka)?;
                }
            }
            Node::Web(n) => {
                fs::create_dir_all(own.join("tmp"))?;
                let dr = spec.l4 == Some(plan::L4Mode::Dr);
                write(own.join("nginx.conf"), plan::nginx_conf(n, dir, dr))?;
            }
            Node::Client => {}
            Node::Router => {}
        }
        super::bgp_run::write_frr_files(spec, dir, node)?;
    }
    Ok(())
}

pub(super) fn add_netns(ns: &str) -> Result<()> {
    sys::ip(&["netns", "add", ns])?;
    sys::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    // The namespace keeps the kernel's defaults (duplicate address
    // detection on, rp_filter, ARP): a lab that turns them off hides what
    // a real host does (an IPv6 address is tentative for a second or two).
    Ok(())
}

pub(super) fn build_network(spec: &Spec, names: &Names) -> Result<()> {
    let switch = names.switch();
    add_netns(&switch)?;
    let sw = |args: &[&str]| {
        let mut all = vec!["-n", switch.as_str()];
        all.extend_from_slice(args);
        sys::ip(&all)
    };
    sw(&["link", "add", BRIDGE, "type", "bridge"])?;
    sw(&["link", "set", BRIDGE, "up"])?;
    for node in spec.nodes() {
        let ns = names.ns(node);
        add_netns(&ns)?;
        if spec.bgp && node == Node::Client {
            super::bgp_run::client_cable(&ns, &names.ns(Node::Router))?;
            continue;
        }
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
        if spec.ipv6 {
            let addr6 = format!("{}/64", node.addr6());
            sys::ip(&["-n", &ns, "addr", "add", &addr6, "dev", IFACE])?;
        }
        sys::ip(&["-n", &ns, "link", "set", IFACE, "up"])?;
        l4_node(spec, node, &ns)?;
        super::bgp_run::links(spec, node, &ns)?;
    }
    if spec.ipv6 {
        wait_ipv6_settled(spec, names, Duration::from_secs(60))?;
    }
    Ok(())
}

/// What `--l4` needs beyond the defaults. NAT: the LBs forward. DR: the
/// backends accept the VIP on `lo` and never answer ARP for it
/// (arp_ignore=1: answer only for addresses on the asking interface;
/// arp_announce=2: never use the VIP as an ARP source), as LVS-DR requires
/// (seed 004's notify.sh); the LBs keep every default.
fn l4_node(spec: &Spec, node: Node, ns: &str) -> Result<()> {
    match (spec.l4, node) {
        (Some(plan::L4Mode::Nat), Node::Lb(_)) => {
            sys::exec_in(ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        }
        (Some(plan::L4Mode::Dr), Node::Web(_)) => {
            for k in ["all", IFACE] {
                for (key, v) in [("arp_ignore", 1), ("arp_announce", 2)] {
                    let set = format!("net.ipv4.conf.{k}.{key}={v}");
                    sys::exec_in(ns, "sysctl", &["-qw", &set])?;
                }
            }
            sys::ip(&["-n", ns, "addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        }
        _ => {}
    }
    Ok(())
}

/// Wait until no node's eth0 has a tentative IPv6 address. Duplicate
/// address detection (on: the kernel default) keeps a new address unusable
/// for a second or two; `up` returns a network a host would call online
/// (systemd-networkd-wait-online waits for the same), so a client's first
/// ping does not go out from an address it cannot use yet. The timeout is
/// an upper bound for a loaded machine.
fn wait_ipv6_settled(spec: &Spec, names: &Names, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        for node in spec.nodes() {
            let ns = names.ns(node);
            let show = |flag: &str| {
                sys::ip(&["-n", &ns, "-6", "-o", "addr", "show", "dev", IFACE, flag])
                    .map(|out| out.trim().to_string())
            };
            let failed = show("dadfailed")?;
            if !failed.is_empty() {
                bail!("{node}: duplicate address detection failed: {failed}");
            }
            if !show("tentative")?.is_empty() {
                pending.push(node.to_string());
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!(
                "IPv6 addresses of {} still tentative after {:?}",
                pending.join(", "),
                timeout
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of a log, for error messages.
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until exactly one LB holds each of `vips`, every backend answers
/// `/health` and requests through the (first) VIP reach every backend (so
/// the proxy has them all UP). Returns the first VIP's master. Fails early if
/// a daemon died.
pub(super) fn wait_ready(
    lab: &Running,
    vips: &[std::net::Ipv4Addr],
    daemons: &[Started],
    timeout: Duration,
) -> Result<u8> {
    let end = Instant::now() + timeout;
    let mut why;
    loop {
        all_alive(daemons)?;
        // One read of the holders decides both "settled" and who the
        // master is: two reads could see different elections.
        let held: Vec<_> = vips.iter().map(|&v| (v, lab.holders_of(v))).collect();
        let settled = one_holder_each(&held);
        let health = backend_health(lab)?;
        let down: Vec<String> = health
            .iter()
            .filter(|(_, r)| !matches!(r, Ok(Reply { status: 200, .. })))
            .map(|(w, r)| match r {
                Ok(rep) => format!("web{w} /health {}", rep.status),
                Err(e) => format!("web{w} /health: {e}"),
            })
            .collect();
        why = if let Err(why) = settled {
            why
        } else if !down.is_empty() {
            down.join("; ")
        } else {
            // Round robin over UP servers: 2 rounds reach every UP backend.
            let (seen, missing) = unanswered_backends(lab, vip_url(), 2 * lab.webs.len())?;
            if missing.is_empty() {
                // The backups' view too: a failover must find every backend UP.
                match not_all_up(lab) {
                    None => return settled.map_err(anyhow::Error::msg),
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

/// An error naming the first daemon that exited, with the end of its log.
pub(super) fn all_alive(daemons: &[Started]) -> Result<()> {
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
    Ok(())
}

/// Send `rounds` requests from the client to `url`: the backends that
/// answered (one entry per answer) and those that answered none (round
/// robin over UP servers reaches each in turn).
pub(super) fn unanswered_backends(
    lab: &Running,
    url: std::net::SocketAddr,
    rounds: usize,
) -> Result<(Vec<String>, Vec<String>)> {
    let seen = lab.in_client(move || {
        (0..rounds)
            .filter_map(|_| probe::get(url, "/", Duration::from_millis(500)).ok())
            .filter(|r| r.status == 200)
            .filter_map(|r| r.server)
            .collect::<Vec<_>>()
    })?;
    let missing = lab
        .webs
        .iter()
        .map(|w| format!("web{w}"))
        .filter(|w| !seen.contains(w))
        .collect();
    Ok((seen, missing))
}

/// The first VIP's master if each VIP has exactly one holder, else why not.
pub(super) fn one_holder_each(held: &[(std::net::Ipv4Addr, Vec<u8>)]) -> Result<u8, String> {
    for (v, h) in held {
        if h.len() != 1 {
            return Err(format!("{} LBs hold the VIP {v}, want 1", h.len()));
        }
    }
    match held.first() {
        Some((_, h)) => Ok(h[0]),
        None => Err("no VIP to wait for".into()),
    }
}

/// Why not every LB's halo reports every backend UP yet, if so.
pub(super) fn not_all_up(lab: &Running) -> Option<String> {
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

pub(super) fn print_summary(spec: &Spec, lab: &Running, master: u8, took: Duration) {
    let f = lab.dir_flag();
    let c = sys::lab_cmd();
    let vips = if spec.vips > 1 {
        format!("VIPs {VIP}..{}", plan::vip(spec.vips))
    } else {
        format!("VIP {VIP}")
    };
    println!(
        "halo lab is up after {:.1} s: {} LBs, {} backends, {vips}, files in {}",
        took.as_secs_f64(),
        spec.lbs,
        spec.backends,
        lab.dir.display()
    );
    println!();
    println!("  {:<7} {:<12} {:<40} state", "node", "address", "runs");
    for l in spec.lbs() {
        let n = lb_num(l);
        // One priority per VIP, in VIP order: 110/90/100.
        let prio = (1..=spec.vips)
            .map(|i| spec.priority(n, i).to_string())
            .collect::<Vec<_>>()
            .join("/");
        let runs = if spec.is_keepalived(n) {
            format!("keepalived VRRP (prio {prio}) + halo proxy")
        } else {
            let balancer = match spec.l4 {
                Some(plan::L4Mode::Dr) => "l4 dr (nftables)",
                Some(plan::L4Mode::Nat) => "l4 nat (nftables)",
                None => "proxy",
            };
            format!("halo VRRP (prio {prio}) + {balancer}")
        };
        let state = if spec.vips > 1 {
            // Active-active: the kernel's view, VIP by VIP.
            let held: Vec<String> = spec
                .vip_addrs()
                .into_iter()
                .filter(|&v| lab.holders_of(v).contains(&n))
                .map(|v| v.to_string())
                .collect();
            if held.is_empty() {
                "BACKUP of all".to_string()
            } else {
                format!("MASTER of {}", held.join(", "))
            }
        } else if n == master {
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
        format!("(you: {c} curl / exec client)")
    );
    println!(
        "  {:<7} {:<12} bridge {BRIDGE}",
        "switch",
        lab.names.switch()
    );
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
            format!("{c} curl 9{f}"),
            "requests through the VIP, round robin over the webs".to_string(),
        ),
        (
            format!("{c} watch{f}"),
            "live view: master, traffic, failures (Ctrl-C to quit)".to_string(),
        ),
        (
            format!("{c} kill {m}{f}"),
            "crash the master and see the VIP move".to_string(),
        ),
        (
            format!("{c} stop web1{f}"),
            "a backend fails: health checks take it out".to_string(),
        ),
        (
            format!("{c} cut lbs{f}"),
            "partition the LBs: split brain (heal with `heal lbs`)".to_string(),
        ),
        (
            format!("{c} exec{f} {m} -- tcpdump -ni eth0 vrrp"),
            "the adverts on the wire".to_string(),
        ),
        (
            format!("{c} status{f}"),
            "who is master, backends' health".to_string(),
        ),
        (format!("{c} down{f}"), "remove everything".to_string()),
    ];
    // A VRRP-only lab has no backend to stop.
    let no_webs = spec.backends == 0;
    let tips: Vec<_> = tips
        .into_iter()
        .filter(|(cmd, _)| !(no_webs && (cmd.contains("web1") || cmd.contains("curl"))))
        .collect();
    let width = tips.iter().map(|(cmd, _)| cmd.len()).max().unwrap_or(0);
    let widest = tips.iter().map(|(_, what)| what.len()).max().unwrap_or(0);
    for (cmd, what) in tips {
        // One line each when that fits a terminal; a long binary path
        // (not installed yet) gets the description on a line of its own.
        if 2 + width + 3 + widest <= 100 {
            println!("  {cmd:<width$}   {what}");
        } else {
            println!("  {cmd}\n      {what}");
        }
    }
    println!();
    println!(
        "Configs: {}/lb1/halo.toml (edit, then `{c} reload lb1{f}`); exercises in docs/labs/.",
        lab.dir.display()
    );
}

// === down ===

/// Kill every process in the lab's namespaces, delete the namespaces, and
/// remove runtime files (pid files, sockets) from the lab directory.
/// Idempotent, and needs nothing recorded.
pub fn down(which: &Which) -> Result<()> {
    let dir = which.dir.as_path();
    sys::require(&[IPROUTE])?;
    let (namespaces, killed) = teardown(&which.names)?;
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
pub(super) fn teardown(names: &Names) -> Result<(usize, usize)> {
    let namespaces = lab_namespaces(names)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_comes_from_the_same_read_that_found_one_holder_per_vip() {
        let v = plan::vip;
        assert_eq!(one_holder_each(&[(v(1), vec![2]), (v(2), vec![3])]), Ok(2));
        // VIP 1 not held yet (the state `up` panicked on when a second read
        // had found it held): a reason, not an index out of bounds.
        assert_eq!(
            one_holder_each(&[(v(1), vec![]), (v(2), vec![3])]),
            Err("0 LBs hold the VIP 192.0.2.100, want 1".into())
        );
        assert_eq!(
            one_holder_each(&[(v(1), vec![1]), (v(2), vec![1, 2])]),
            Err("2 LBs hold the VIP 192.0.2.101, want 1".into())
        );
        assert!(one_holder_each(&[]).is_err());
    }
}
