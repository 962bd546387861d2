//! `[l4.NAME]`: layer-4 load balancing in the kernel through nftables.
//!
//! - `table`: the pure part, services + server states -> one nftables
//!   JSON transaction (and the reading of `nft -j list`).
//! - `nft`: runs the `nft` binary (`nft -j -f -`), nothing else.
//! - this module is the driver: [`L4Side`] holds the health board and
//!   probes of the L4 services (the same checks as proxy services) and a
//!   task that reconciles the kernel's `halo_l4` tables on start, on every
//!   health change and on reload, and deletes them on stop. It never
//!   touches another table.
//!
//! Direct routing needs the servers' MAC addresses: they come from the
//! kernel's neighbour table (`/proc/net/arp`); a server whose MAC is not
//! known yet is poked with one empty UDP datagram (to the discard port) so
//! that the kernel resolves it, and takes no flows until it is known.

pub mod nft;
pub mod table;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{self, L4Forward, L4Service, ProxyService};
use crate::health::{self, AdminState, HealthBoard, HealthRuntime};
use table::{Counter, Mac, ServiceState};

/// How often the driver looks again without a health change: MACs that
/// became known, counters for status.
const TICK: Duration = Duration::from_secs(2);

/// Counters and state of the L4 services as last applied, for status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct L4Report {
    /// Per service (config order): per server (usable, counter), and the
    /// service's own counter.
    pub services: Vec<(Vec<(bool, Counter)>, Counter)>,
}

/// One running version of the `[l4.*]` configuration.
pub struct L4Side {
    pub board: Arc<HealthBoard>,
    pub services: Vec<L4Service>,
    health: Option<HealthRuntime>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    pub report: Arc<Mutex<L4Report>>,
}

/// The health board and probes take proxy services; for their purpose an
/// L4 service is one (a name, servers at addresses, a `[health]` table),
/// the proxy-only fields keep their defaults and are never read.
fn as_checked(services: &[L4Service]) -> Vec<ProxyService> {
    let text = "[proxy.p]\nbind = [\"127.0.0.1:1\"]\nservers = [{ name = \"s\", address = \"127.0.0.1:1\" }]\n";
    let template = config::parse_str("(l4)", text)
        .expect("the template proxy service is valid")
        .proxy
        .remove(0);
    services
        .iter()
        .map(|s| ProxyService {
            name: s.name.clone(),
            servers: s
                .servers
                .iter()
                .map(|v| config::Server {
                    name: v.name.clone(),
                    address: v.address,
                    weight: v.weight,
                    maxconn: 0,
                    send_proxy: None,
                    tls: None,
                })
                .collect(),
            health: s.health.clone(),
            ..template.clone()
        })
        .collect()
}

impl L4Side {
    /// Checks start, the tables are applied once (an error here means
    /// nothing changed in the kernel), then the reconcile task runs.
    /// `admin`: drain/disable states to carry over from the previous
    /// generation (by name), set before the first table is written.
    pub async fn start(
        services: &[L4Service],
        admin: &[(String, String, AdminState)],
    ) -> Result<L4Side> {
        let checked = as_checked(services);
        let board = HealthBoard::new(&checked);
        let (stop, stop_rx) = watch::channel(false);
        let report = Arc::new(Mutex::new(L4Report::default()));
        if services.is_empty() {
            // Nothing to balance: only make sure no table is left from an
            // earlier run (kill -9) or the previous config. Best effort: a
            // halo without [l4] must run where nft is missing or not allowed.
            match nft::current().await {
                Ok(current) if current.inet.is_some() || current.netdev.is_some() => {
                    match nft::apply(&table::teardown(&current)).await {
                        Ok(()) => info!("l4: removed nftables table {}", table::TABLE),
                        Err(e) => warn!("l4: removing table {}: {e:#}", table::TABLE),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("l4: not looking for a stale table: {e:#}"),
            }
            return Ok(L4Side {
                board,
                services: Vec::new(),
                health: None,
                stop,
                task: None,
                report,
            });
        }
        check_machine(services)?;
        warn_forwarding(services);
        let health = health::spawn(&checked, board.clone()).context("starting l4 health checks")?;
        restore_admin(services, &board, admin);
        let mut rec = Reconciler {
            services: services.to_vec(),
            board: board.clone(),
            last: None,
            report: report.clone(),
        };
        rec.step(true).await.context("programming nftables")?;
        let task = tokio::spawn(rec.run(stop_rx));
        info!(
            "l4: {} service(s) in nftables table {}",
            services.len(),
            table::TABLE
        );
        Ok(L4Side {
            board,
            services: services.to_vec(),
            health: Some(health),
            stop,
            task: Some(task),
            report,
        })
    }

    /// True when this side runs and `new` checks its servers the same way
    /// ([`same_checks`]): then a reload keeps this board (and what it
    /// knows: a DOWN server stays out of the map) and only the scheduling
    /// changes.
    pub fn same_checks(&self, new: &[L4Service]) -> bool {
        self.task.is_some() && same_checks(&self.services, new)
    }

    /// Apply `new` (see [`L4Side::same_checks`]) with this board: a new
    /// reconcile task writes the new table once, then follows the board.
    /// On error the running task goes on with the old services.
    pub async fn reschedule(&mut self, new: &[L4Service]) -> Result<()> {
        check_machine(new)?;
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut rec = Reconciler {
            services: new.to_vec(),
            board: self.board.clone(),
            last: None,
            report: self.report.clone(),
        };
        let applied = rec.step(true).await.context("programming nftables");
        let services = if applied.is_ok() { new } else { &self.services };
        rec.services = services.to_vec();
        self.services = services.to_vec();
        self.stop = stop;
        self.task = Some(tokio::spawn(rec.run(stop_rx)));
        applied
    }

    /// Stop checks and the reconcile task, leaving the tables as they are
    /// (a reload: the next generation takes them over).
    pub async fn retire(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(h) = self.health.take() {
            let _ = tokio::task::spawn_blocking(move || h.shutdown()).await;
        }
    }

    /// Stop everything and delete halo's tables.
    pub async fn stop(self) {
        self.retire().await;
        match nft::current().await {
            Ok(current) if current.inet.is_some() || current.netdev.is_some() => {
                match nft::apply(&table::teardown(&current)).await {
                    Ok(()) => info!("l4: removed nftables table {}", table::TABLE),
                    Err(e) => error!("l4: removing table {}: {e:#}", table::TABLE),
                }
            }
            Ok(_) => {}
            Err(e) => error!("l4: {e:#}"),
        }
    }

    /// (service, server, admin state) of every server not enabled.
    pub fn admin_states(&self) -> Vec<(String, String, AdminState)> {
        let mut out = Vec::new();
        for (si, s) in self.services.iter().enumerate() {
            for (vi, v) in s.servers.iter().enumerate() {
                match self.board.admin(si, vi) {
                    Some(AdminState::Enabled) | None => {}
                    Some(a) => out.push((s.name.clone(), v.name.clone(), a)),
                }
            }
        }
        out
    }

    /// For VRRP tracking: the board and each service's index in it.
    pub fn tracking(&self) -> crate::vrrp::driver::ProxyTracking {
        crate::vrrp::driver::ProxyTracking {
            board: self.board.clone(),
            index: self
                .services
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), i))
                .collect(),
        }
    }
}

/// Apply what [`L4Side::admin_states`] saved, for the servers that still
/// exist.
fn restore_admin(
    services: &[L4Service],
    board: &HealthBoard,
    saved: &[(String, String, AdminState)],
) {
    for (svc, srv, a) in saved {
        let Some(si) = services.iter().position(|s| &s.name == svc) else {
            continue;
        };
        if let Some(vi) = services[si].servers.iter().position(|v| &v.name == srv) {
            board.set_admin(si, vi, *a);
        }
    }
}

/// What the health board of a service depends on: its name, its servers'
/// names and addresses, its checks.
type Checked<'a> = (
    &'a str,
    Vec<(&'a str, SocketAddr)>,
    Option<&'a config::HealthCheck>,
);

/// True when `old` and `new` check the same servers the same way (names,
/// addresses and health settings, in order). Pure: the reload plan
/// (`run::reload`) decides with it.
pub fn same_checks(old: &[L4Service], new: &[L4Service]) -> bool {
    fn checks(list: &[L4Service]) -> Vec<Checked<'_>> {
        list.iter()
            .map(|s| {
                let servers = s
                    .servers
                    .iter()
                    .map(|v| (v.name.as_str(), v.address))
                    .collect();
                (s.name.as_str(), servers, s.health.as_ref())
            })
            .collect()
    }
    checks(old) == checks(new)
}

/// What the table was last built from, per service.
type Inputs = Vec<(Vec<bool>, Vec<Option<Mac>>, Option<Mac>, Option<Mac>)>;

struct Reconciler {
    services: Vec<L4Service>,
    board: Arc<HealthBoard>,
    last: Option<Inputs>,
    report: Arc<Mutex<L4Report>>,
}

impl Reconciler {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.board.subscribe_servers();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.step(false).await {
                // Retried at the next tick or health change.
                error!("l4: programming nftables: {e:#}");
                self.last = None;
            }
        }
    }

    /// Rebuild the inputs; apply when they changed (or `force`), then
    /// refresh the counters.
    async fn step(&mut self, force: bool) -> Result<()> {
        let inputs = self.inputs();
        let changed = self.last.as_ref() != Some(&inputs);
        if changed || force {
            let current = nft::current().await?;
            let states: Vec<ServiceState> = self
                .services
                .iter()
                .zip(&inputs)
                .map(|(svc, (usable, macs, sorry_mac, if_mac))| ServiceState {
                    svc,
                    usable: usable.clone(),
                    macs: macs.clone(),
                    sorry_mac: *sorry_mac,
                    if_mac: *if_mac,
                })
                .collect();
            nft::apply(&table::transaction(&states, &current)).await?;
            for (svc, (usable, _, _, _)) in self.services.iter().zip(&inputs) {
                let up: Vec<&str> = svc
                    .servers
                    .iter()
                    .zip(usable)
                    .filter(|(_, u)| **u)
                    .map(|(s, _)| s.name.as_str())
                    .collect();
                info!(
                    service = %svc.name,
                    "l4 {}: {} of {} server(s) in the map [{}]",
                    svc.name,
                    up.len(),
                    svc.servers.len(),
                    up.join(", ")
                );
            }
            self.last = Some(inputs);
        }
        self.refresh_report().await;
        Ok(())
    }

    fn inputs(&self) -> Inputs {
        let arp = read_arp();
        self.services
            .iter()
            .enumerate()
            .map(|(si, svc)| {
                let dr_if = match &svc.forward {
                    L4Forward::Dr { interface } => Some(interface.as_str()),
                    L4Forward::Nat { .. } => None,
                };
                let mac_of = |a: SocketAddr| dr_if.and_then(|i| neighbour(&arp, a.ip(), i));
                let macs: Vec<Option<Mac>> =
                    svc.servers.iter().map(|s| mac_of(s.address)).collect();
                let usable = svc
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(vi, s)| {
                        let up = self.board.is_up(si, vi);
                        if up && dr_if.is_some() && macs[vi].is_none() {
                            poke(s.address.ip());
                            return false;
                        }
                        up
                    })
                    .collect();
                let sorry_mac = svc.sorry.and_then(|a| {
                    let m = mac_of(a);
                    if m.is_none() && dr_if.is_some() {
                        poke(a.ip());
                    }
                    m
                });
                let if_mac = dr_if.and_then(interface_mac);
                (usable, macs, sorry_mac, if_mac)
            })
            .collect()
    }

    async fn refresh_report(&mut self) {
        // One `nft list` per family in use, every tick: a few ms of CPU.
        let mut families = Vec::new();
        for s in &self.services {
            let f = match s.forward {
                L4Forward::Nat { .. } => "inet",
                L4Forward::Dr { .. } => "netdev",
            };
            if !families.contains(&f) {
                families.push(f);
            }
        }
        let counters = match nft::counters(&families).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Deleted behind halo's back (`nft flush ruleset`, a
                // firewall reload): written again at the next tick.
                warn!("l4: table {} is gone, writing it again", table::TABLE);
                self.last = None;
                return;
            }
            Err(e) => {
                warn!("l4: reading counters: {e:#}");
                return;
            }
        };
        let get = |chain: String| {
            counters
                .iter()
                .find(|(c, _)| *c == chain)
                .map(|(_, n)| *n)
                .unwrap_or_default()
        };
        let usable = self.last.clone().unwrap_or_default();
        let services = self
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let servers = s
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(vi, v)| {
                        let up = usable
                            .get(si)
                            .and_then(|u| u.0.get(vi))
                            .copied()
                            .unwrap_or(false);
                        (up, get(table::server_chain(&s.name, &v.name)))
                    })
                    .collect();
                (servers, get(table::service_chain(&s.name)))
            })
            .collect();
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = L4Report { services };
    }
}

/// What `halo check` cannot know: whether the direct-routing interfaces
/// exist here. A missing one must fail the start or reload, not leave a
/// table that sends nothing anywhere. (The reload calls it before it
/// stops the running generation.)
pub fn check_machine(services: &[L4Service]) -> Result<()> {
    for s in services {
        if let L4Forward::Dr { interface } = &s.forward {
            if interface_mac(interface).is_none() {
                anyhow::bail!(
                    "l4 {}: interface {interface} does not exist or has no Ethernet address",
                    s.name
                );
            }
        }
    }
    Ok(())
}

/// NAT forwards between the client and the servers: without IP
/// forwarding the kernel drops what the table sends on.
fn warn_forwarding(services: &[L4Service]) {
    for (v6, path) in [
        (false, "/proc/sys/net/ipv4/ip_forward"),
        (true, "/proc/sys/net/ipv6/conf/all/forwarding"),
    ] {
        let nat = services
            .iter()
            .any(|s| matches!(s.forward, L4Forward::Nat { .. }) && s.address.is_ipv6() == v6);
        let on = std::fs::read_to_string(path).is_ok_and(|t| t.trim() == "1");
        if nat && !on {
            warn!("l4: forward = \"nat\" needs IP forwarding, but {path} is not 1: set it (sysctl) or nothing reaches the servers");
        }
    }
}

/// (IP, MAC, device) of the complete entries of `/proc/net/arp`.
fn read_arp() -> Vec<(IpAddr, Mac, String)> {
    std::fs::read_to_string("/proc/net/arp")
        .map(|t| parse_arp(&t))
        .unwrap_or_default()
}

/// Parses the text of `/proc/net/arp`; incomplete entries (flags without
/// 0x2, the MAC all zero) are left out.
fn parse_arp(text: &str) -> Vec<(IpAddr, Mac, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
            let mac = parse_mac(f[3])?;
            if flags & 0x2 == 0 || mac == [0; 6] {
                return None;
            }
            Some((f[0].parse().ok()?, mac, f[5].to_string()))
        })
        .collect()
}

fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn neighbour(arp: &[(IpAddr, Mac, String)], ip: IpAddr, dev: &str) -> Option<Mac> {
    arp.iter()
        .find(|(a, _, d)| *a == ip && d == dev)
        .map(|(_, m, _)| *m)
}

fn interface_mac(dev: &str) -> Option<Mac> {
    let t = std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).ok()?;
    parse_mac(t.trim())
}

/// One empty UDP datagram to the discard port: the kernel resolves the
/// address's MAC to send it.
fn poke(ip: IpAddr) {
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], SocketAddr::new(ip, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_table_complete_entries_only() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.0.2.21       0x1         0x2         02:00:00:00:00:21     *        eth0\n\
                    192.0.2.22       0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    192.0.2.23       0x1         0x6         02:00:00:00:00:23     *        eth1\n";
        let arp = parse_arp(text);
        assert_eq!(arp.len(), 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            neighbour(&arp, ip("192.0.2.21"), "eth0"),
            Some([2, 0, 0, 0, 0, 0x21])
        );
        assert_eq!(neighbour(&arp, ip("192.0.2.22"), "eth0"), None);
        assert_eq!(neighbour(&arp, ip("192.0.2.23"), "eth0"), None);
        assert!(neighbour(&arp, ip("192.0.2.23"), "eth1").is_some());
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("aa:bb:cc:dd:ee:0f"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f])
        );
        assert_eq!(parse_mac("aa:bb:cc:dd:ee"), None);
        assert_eq!(parse_mac("aa:bb:cc:dd:ee:0f:11"), None);
    }
}
