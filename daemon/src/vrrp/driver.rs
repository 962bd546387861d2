//! The VRRP I/O driver: one task per `[vrrp.NAME]` instance.
//!
//! It is the only VRRP code that reads the clock or touches a socket. It
//! feeds received adverts, timer expiries, link and health changes,
//! releases and reclaims into the pure `router::VirtualRouter`, and
//! carries out the actions it returns (send the router's advert, add or
//! remove VIPs, announce them, run hooks, log). Protocol decisions, the
//! hand-over of a leaving master included, are the router's.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::explain::Explanation;
use super::netlink::{LinkEvent, LinkLocal, Netlink};
use super::packet::{Advert, PacketCtx, Version};
use super::router::{
    Action, DropCounters, HandOver, PriorityWhy, Release, RouterParams, State, VirtualRouter,
};
use super::sockets::{Announcer, Received, VrrpSockets, MCAST_V4, MCAST_V6};
use crate::config::{TrackTarget, VrrpInstance, VrrpVersion};
use crate::health::track_script::ScriptWatch;
use crate::health::HealthBoard;
use crate::hooks::{HookState, Hooks};
use crate::telemetry::status::{DropReason, PeerView, StatusHub, TrackView, VrrpState, VrrpStatus};

/// What an instance can be told from outside while it runs.
pub enum Control {
    /// Clean stop: send priority 0, remove the VIPs, return.
    Shutdown,
    /// `halo vrrp release`: hand the VIP over (priority 0) and stay backup
    /// at the lowest priority, for a time or until reclaimed.
    Release(Release),
    /// `halo vrrp reclaim`: end a release now.
    Reclaim,
    /// A reload changed what this instance tracks or its priority. Other
    /// changes restart the instance (the supervisor decides).
    Reconfigure(Box<VrrpInstance>),
    /// A reload replaced the proxy's health board.
    Tracking(ProxyTracking),
    /// The `[l4.*]` services' health board (sent at start and on reload).
    L4Tracking(ProxyTracking),
    /// A reload restarted the track scripts.
    Scripts(ScriptWatch),
    /// The instance's sync group holds it (why, for `halo status`): hand
    /// over and stay backup at priority 1, as a release; `None` frees it.
    Follow(Option<String>),
}

/// Where the driver learns about the health of tracked proxy services.
#[derive(Clone)]
pub struct ProxyTracking {
    pub board: Arc<HealthBoard>,
    /// Service name -> index in the board.
    pub index: HashMap<String, usize>,
}

/// Rate-limits the warnings for dropped packets: one line per reason per
/// ten seconds, with the count of what was suppressed.
struct DropLog {
    last: HashMap<String, (Instant, u64)>,
}

impl DropLog {
    fn note(&mut self, inst: &str, now: Instant, reason: String) {
        const EVERY: Duration = Duration::from_secs(10);
        let e = self.last.entry(reason.clone()).or_insert((now - EVERY, 0));
        if now.duration_since(e.0) >= EVERY {
            if e.1 > 0 {
                warn!(
                    instance = inst,
                    "{inst}: dropped advert: {reason} (and {} more like it)", e.1
                );
            } else {
                warn!(instance = inst, "{inst}: dropped advert: {reason}");
            }
            *e = (now, 0);
        } else {
            e.1 += 1;
        }
    }
}

/// Notices when the VRRP thread wakes up later than its timer asked:
/// a CPU too busy (or a VM's vCPU descheduled) delays the master's adverts,
/// and a wake-up later than about two advert intervals lets a backup take
/// over although nothing failed. (A backup's own lateness is the router's
/// business: it then defers the takeover once, `router::Deferred`.) One warning per ten seconds at most, with
/// the worst lateness and how many late wake-ups it stands for.
struct LateLog {
    /// When the last warning went out; the worst lateness and the count of
    /// late wake-ups since.
    last: Option<Instant>,
    worst: Duration,
    count: u64,
}

impl LateLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> LateLog {
        LateLog {
            last: None,
            worst: Duration::ZERO,
            count: 0,
        }
    }

    /// A wake-up `late` after its deadline, with adverts every `interval`:
    /// what to warn about now (worst lateness, late wake-ups), if anything.
    /// Only lateness of a whole advert interval or more counts.
    fn note(
        &mut self,
        now: Instant,
        late: Duration,
        interval: Duration,
    ) -> Option<(Duration, u64)> {
        if late < interval {
            return None;
        }
        self.worst = self.worst.max(late);
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.last = Some(now);
        let r = (self.worst, self.count);
        self.worst = Duration::ZERO;
        self.count = 0;
        Some(r)
    }
}

/// The effective priority and the sentence explaining it.
fn effective_priority(inst: &VrrpInstance, down: &[(String, i16)]) -> (u8, String) {
    let base = inst.priority.get();
    if base == 255 {
        // The address owner's priority is fixed (RFC 5798 §6.1).
        return (255, "address owner".into());
    }
    let sum: i32 = down.iter().map(|(_, w)| i32::from(*w)).sum();
    let p = (i32::from(base) + sum).clamp(1, 254) as u8;
    if down.is_empty() {
        return (p, format!("{p} = configured"));
    }
    let parts: Vec<String> = down
        .iter()
        .map(|(what, w)| {
            format!(
                "{} {} ({what})",
                if *w < 0 { "-" } else { "+" },
                w.unsigned_abs()
            )
        })
        .collect();
    (p, format!("{p} = {base} {}", parts.join(" ")))
}

fn params(inst: &VrrpInstance, priority: u8) -> RouterParams {
    RouterParams {
        name: inst.name.clone(),
        version: match inst.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        },
        vrid: inst.vrid.get(),
        priority,
        advert_interval_cs: inst.advert_interval.centis(),
        preempt: inst.preempt,
        preempt_delay: inst.preempt_delay,
        vips: inst.virtual_ips.iter().map(|n| n.addr()).collect(),
        auth: inst.auth_pass.map(|a| a.0),
        garp_repeat: inst.garp_repeat,
        garp_interval: inst.garp_interval,
        garp_refresh: inst.garp_refresh,
    }
}

struct Instance {
    cfg: VrrpInstance,
    nl: Netlink,
    ifindex: u32,
    sockets: VrrpSockets,
    announcer: Announcer,
    src: IpAddr,
    router: VirtualRouter,
    drops: DropLog,
    vips_installed: bool,
    /// Packets dropped before the router saw them (TTL, decoding).
    driver_drops: PacketDrops,
    peers: BTreeMap<IpAddr, Peer>,
    last_change: Option<(Instant, String)>,
    /// The sentence behind the tracked priority, for the log.
    prio_why: String,
    /// notify_* hooks (none configured: `None`); `fire` only queues.
    hooks: Option<Hooks>,
    /// Why the instance's sync group holds it, while it does.
    follow: Option<String>,
}

impl Instance {
    fn ctx(&self, src: IpAddr, dst: IpAddr) -> PacketCtx {
        PacketCtx {
            src,
            dst,
            v3_checksum_as_v2: self.cfg.v3_checksum_as_v2,
        }
    }

    fn destinations(&self) -> Vec<IpAddr> {
        if !self.cfg.unicast_peers.is_empty() {
            return self.cfg.unicast_peers.clone();
        }
        match self.src {
            IpAddr::V4(_) => vec![IpAddr::V4(MCAST_V4)],
            IpAddr::V6(_) => vec![IpAddr::V6(MCAST_V6)],
        }
    }

    fn on_packet(&mut self, now: Instant, pkt: Received) {
        let name = self.cfg.name.clone();
        if pkt.src == self.src {
            return; // our own advert looped back
        }
        if pkt.ttl != 255 {
            self.driver_drops.ttl += 1;
            self.drops.note(
                &name,
                now,
                format!("TTL/hop limit {} != 255 from {}", pkt.ttl, pkt.src),
            );
            return;
        }
        let ctx = self.ctx(pkt.src, pkt.dst);
        let advert = match Advert::decode(&pkt.payload, &ctx) {
            Ok(a) => a,
            Err(e) => {
                self.driver_drops.malformed += 1;
                self.drops.note(&name, now, format!("{e} from {}", pkt.src));
                return;
            }
        };
        if advert.vrid != self.cfg.vrid.get() {
            return; // another virtual router on this link: not ours to judge
        }
        self.peers.insert(
            pkt.src,
            Peer {
                priority: advert.priority,
                interval_cs: advert.interval_cs,
                at: now,
            },
        );
        if let Err(d) = self.router.handle_advert(now.into_std(), pkt.src, &advert) {
            let why = match d {
                super::router::Drop::VipMismatch { src } => format!(
                    "router {src} uses VRID {} with a different VIP set {:?} (ours: {:?}); check its config",
                    self.cfg.vrid.get(),
                    advert.addrs,
                    self.cfg.virtual_ips.iter().map(|n| n.addr()).collect::<Vec<_>>()
                ),
                other => format!("{other:?} from {}", pkt.src),
            };
            self.drops.note(&name, now, why);
        }
    }

    /// Feed the router every advert already queued in the socket (at most
    /// a few hundred: a flood must not keep the timers from running).
    fn read_queued(&mut self, now: Instant) {
        for _ in 0..256 {
            match self.sockets.try_recv() {
                Ok(Some(pkt)) => self.on_packet(now, pkt),
                Ok(None) => return,
                // A datagram that did not parse is gone; read on.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    debug!(instance = %self.cfg.name, "receive: {e}");
                }
                Err(e) => {
                    debug!(instance = %self.cfg.name, "receive: {e}");
                    return;
                }
            }
        }
    }

    async fn run_actions(&mut self) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::SendAdvert {
                    priority,
                    interval_cs,
                } => {
                    let adv = self.router.make_advert(priority, interval_cs);
                    for dst in self.destinations() {
                        let bytes = adv.encode(&self.ctx(self.src, dst));
                        if let Err(e) = self.sockets.send(dst, &bytes) {
                            debug!(instance = %self.cfg.name, "sending advert to {dst}: {e}");
                        }
                    }
                }
                Action::SendGarp => {
                    for vip in &self.cfg.virtual_ips {
                        if let Err(e) = self.announcer.announce(vip.addr()) {
                            debug!(instance = %self.cfg.name, "announcing {}: {e}", vip.addr());
                        }
                    }
                }
                Action::AddVips => {
                    for vip in self.cfg.virtual_ips.clone() {
                        if let Err(e) = self.nl.add_address(self.ifindex, vip).await {
                            warn!(instance = %self.cfg.name, "{}: {e:#}", self.cfg.name);
                        }
                    }
                    self.vips_installed = true;
                }
                Action::DelVips => {
                    self.remove_vips().await;
                }
                Action::StateChanged { from, to, why } => {
                    // Initialize is the way out (stop, link down, release);
                    // those hooks are fired where the cause is known.
                    let hook = match to {
                        State::Master => Some(HookState::Master),
                        State::Backup => Some(HookState::Backup),
                        State::Initialize => None,
                    };
                    if let (Some(h), Some(s)) = (&self.hooks, hook) {
                        h.fire(s, self.router.effective_priority());
                    }
                    self.last_change = Some((Instant::now(), why.to_string()));
                    info!(
                        instance = %self.cfg.name,
                        state = %to,
                        "{} {from} -> {to}: {why}",
                        self.cfg.name
                    );
                }
                Action::PriorityChanged { from, to, why } => {
                    let why = match why {
                        PriorityWhy::Tracking => self.prio_why.clone(),
                        other => other.to_string(),
                    };
                    info!(
                        instance = %self.cfg.name,
                        priority = to,
                        "{} priority {from} -> {to}: {why}",
                        self.cfg.name
                    );
                }
                Action::HandedOver(how) => match how {
                    HandOver::Heard { .. } => {
                        info!(instance = %self.cfg.name, "{}: {how}", self.cfg.name)
                    }
                    HandOver::TimedOut { .. } => {
                        debug!(instance = %self.cfg.name, "{}: {how}", self.cfg.name)
                    }
                },
                Action::TakeoverDeferred(d) => {
                    warn!(instance = %self.cfg.name, "{}: {d}", self.cfg.name);
                }
                Action::ReleaseOver => {
                    info!(
                        instance = %self.cfg.name,
                        "{}: release over, back to priority {}",
                        self.cfg.name,
                        self.prio_why
                    );
                }
            }
        }
    }

    fn status(&self, tracker: &Tracker, link_up: bool) -> VrrpStatus {
        let now = Instant::now();
        let r = &self.router;
        let prio_why = self.prio_why.as_str();
        let released = r.released();
        let state = match r.state() {
            _ if !link_up => VrrpState::Fault,
            State::Initialize => VrrpState::Init,
            State::Backup => VrrpState::Backup,
            State::Master => VrrpState::Master,
        };
        let eff = r.effective_priority();
        // Ourselves (our source address) when master.
        let master = r.master();
        let explanation = Explanation::of(
            r,
            now.into_std(),
            &self.cfg.interface,
            link_up,
            self.follow.as_deref(),
            prio_why,
        )
        .to_string();
        let drops = self.driver_drops.by_reason(&r.counters().dropped);
        VrrpStatus {
            name: self.cfg.name.clone(),
            interface: self.cfg.interface.clone(),
            vrid: self.cfg.vrid.get(),
            version: match self.cfg.version {
                VrrpVersion::V2 => 2,
                VrrpVersion::V3 => 3,
            },
            state,
            base_priority: self.cfg.priority.get(),
            effective_priority: eff,
            priority_reason: prio_why.to_string(),
            tracks: tracker
                .items(&self.cfg)
                .into_iter()
                .map(|(what, weight, down)| TrackView { what, weight, down })
                .collect(),
            vips: self.cfg.virtual_ips.iter().map(|v| v.to_string()).collect(),
            master: master.map(|(a, _)| a.to_string()),
            master_priority: master.map(|(_, p)| p),
            explanation,
            last_change: self.last_change.as_ref().map(|(_, w)| w.clone()),
            last_change_secs_ago: self
                .last_change
                .as_ref()
                .map(|(t, _)| now.duration_since(*t).as_secs_f64()),
            peers: self
                .peers
                .iter()
                .map(|(a, p)| PeerView {
                    address: a.to_string(),
                    priority: p.priority,
                    interval_ms: u32::from(p.interval_cs) * 10,
                    secs_ago: now.duration_since(p.at).as_secs_f64(),
                })
                .collect(),
            adverts_sent: r.counters().adverts_sent,
            adverts_received: r.counters().adverts_received,
            transitions: r.counters().transitions,
            drops,
            released_secs_left: released.map(|r| match r {
                Release::Until(u) => Instant::from_std(u)
                    .saturating_duration_since(now)
                    .as_secs_f64(),
                Release::UntilReclaimed => -1.0,
            }),
        }
    }

    /// Clean stop: the router's shutdown (a master sends priority 0),
    /// then the usual receiving and waiting while its hand-over runs, so
    /// the VIPs (and the proxy behind them) stay until the new master
    /// speaks. Removing them at once, as the RFC's Shutdown does, leaves
    /// nobody answering for them during the backups' skew time: clients
    /// saw about 0.6 s of failures at 1 s adverts.
    async fn stop(&mut self) {
        self.router.shutdown(Instant::now().into_std());
        self.run_actions().await;
        while self.router.leaving() {
            let deadline = self
                .router
                .poll_timeout()
                .map_or_else(Instant::now, Instant::from_std);
            tokio::select! {
                r = self.sockets.recv() => match r {
                    Ok(pkt) => self.on_packet(Instant::now(), pkt),
                    Err(e) => debug!(instance = %self.cfg.name, "receive: {e}"),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.router.handle_timeout(Instant::now().into_std());
                }
            }
            self.run_actions().await;
        }
    }

    async fn remove_vips(&mut self) {
        for vip in self.cfg.virtual_ips.clone() {
            if let Err(e) = self.nl.del_address(self.ifindex, vip).await {
                warn!(instance = %self.cfg.name, "{}: {e:#}", self.cfg.name);
            }
        }
        self.vips_installed = false;
    }
}

/// Tracked items and how each one is doing.
struct Tracker {
    link_up: HashMap<String, bool>,
    proxy: Option<ProxyTracking>,
    scripts: Option<ScriptWatch>,
    l4: Option<ProxyTracking>,
}

impl Tracker {
    /// (description, weight, down) for every `track` entry.
    fn items(&self, cfg: &VrrpInstance) -> Vec<(String, i16, bool)> {
        cfg.track
            .iter()
            .map(|t| match &t.what {
                TrackTarget::Interface(i) => {
                    let down = !self.link_up.get(i).copied().unwrap_or(false);
                    (format!("track interface {i}: link down"), t.weight, down)
                }
                TrackTarget::Proxy(p) => {
                    let down = self
                        .proxy
                        .as_ref()
                        .and_then(|tr| tr.index.get(p).map(|&i| !tr.board.service_up(i)))
                        .unwrap_or(false);
                    (format!("track {p}: no healthy server"), t.weight, down)
                }
                TrackTarget::Script(s) => {
                    let down = self.scripts.as_ref().is_some_and(|w| w.is_down(s));
                    (format!("track script {s}: failing"), t.weight, down)
                }
                TrackTarget::L4(s) => {
                    let down = self
                        .l4
                        .as_ref()
                        .and_then(|tr| tr.index.get(s).map(|&i| !tr.board.service_up(i)))
                        .unwrap_or(false);
                    (format!("track l4 {s}: no healthy server"), t.weight, down)
                }
            })
            .collect()
    }

    fn down(&self, cfg: &VrrpInstance) -> Vec<(String, i16)> {
        self.items(cfg)
            .into_iter()
            .filter(|(_, _, d)| *d)
            .map(|(w, n, _)| (w, n))
            .collect()
    }
}

/// Packets dropped before the router saw them (the router counts the rest).
#[derive(Debug, Default)]
struct PacketDrops {
    /// TTL / hop limit not 255 (RFC 5798 7.1).
    ttl: u64,
    /// Did not decode.
    malformed: u64,
}

impl PacketDrops {
    /// With the router's, by the names `halo status` and the metrics'
    /// `reason` label use; reasons that never happened are left out.
    fn by_reason(&self, router: &DropCounters) -> BTreeMap<DropReason, u64> {
        [
            (DropReason::Ttl, self.ttl),
            (DropReason::Malformed, self.malformed),
            (DropReason::Auth, router.auth_mismatch),
            (DropReason::Version, router.version_mismatch),
            (DropReason::Interval, router.interval_mismatch),
            (DropReason::VipSet, router.vip_mismatch),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }
}

/// The last advert seen from each other router.
struct Peer {
    priority: u8,
    interval_cs: u16,
    at: Instant,
}

/// Run one instance until told to shut down. Errors are start-up errors
/// (no such interface, no address to send from, missing capability).
// Each argument is a separate channel from the supervisor.
#[allow(clippy::too_many_arguments)]
pub async fn run_instance(
    mut cfg: VrrpInstance,
    nl: Netlink,
    mut links: mpsc::UnboundedReceiver<LinkEvent>,
    mut tracking: Option<ProxyTracking>,
    mut scripts: Option<ScriptWatch>,
    mut control: mpsc::Receiver<Control>,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
    hub: Option<Arc<StatusHub>>,
) -> Result<()> {
    // `[l4.*]` health arrives by a control message after start (also while
    // the instance still waits for its link-local address).
    let mut l4_tracking: Option<ProxyTracking> = None;
    // A sync group that holds this instance back before it has started
    // (`Control::Follow` while it waits for its link-local address).
    let mut follow: Option<String> = None;
    // A release (or a restored one) that arrives while it waits: applied
    // when it starts.
    let mut pending_release: Option<Release> = None;
    let mut link = nl
        .link_by_name(&cfg.interface)
        .await
        .with_context(|| format!("{}: interface {}", cfg.name, cfg.interface))?;
    let vips: Vec<IpAddr> = cfg.virtual_ips.iter().map(|n| n.addr()).collect();
    // An instance holding no address takes its family from its unicast
    // source or peers (config checked they agree).
    let v6 = match vips.first() {
        Some(a) => a.is_ipv6(),
        None => cfg
            .unicast_src
            .or(cfg.unicast_peers.first().copied())
            .is_some_and(|a| a.is_ipv6()),
    };
    let found = match (cfg.unicast_src, v6) {
        (Some(s), _) => Some(s),
        (None, false) => nl.primary_v4(link.index, &vips).await?.map(IpAddr::V4),
        (None, true) => match nl.link_local_v6(link.index).await? {
            LinkLocal::Usable(a) => Some(IpAddr::V6(a)),
            _ => None,
        },
    };
    let src = match found {
        Some(a) => a,
        None => {
            // No address to send from yet (boot: no carrier, DAD running,
            // DHCP not done). The daemon goes on starting; this instance
            // waits, as in FAULT.
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            let mut waiting = WaitingControls {
                cfg: &mut cfg,
                tracking: &mut tracking,
                l4_tracking: &mut l4_tracking,
                follow: &mut follow,
                release: &mut pending_release,
                scripts: &mut scripts,
                control: &mut control,
                hub: hub.as_deref(),
            };
            let Some(a) = wait_for_source(&nl, link.index, v6, &vips, &mut waiting).await? else {
                return Ok(());
            };
            // The link may have come up meanwhile.
            link = nl
                .link_by_name(&cfg.interface)
                .await
                .with_context(|| format!("{}: interface {}", cfg.name, cfg.interface))?;
            a
        }
    };
    let sockets = match src {
        IpAddr::V4(s) => VrrpSockets::open_v4(&cfg.interface, link.index, s),
        IpAddr::V6(s) => VrrpSockets::open_v6(&cfg.interface, link.index, s),
    }
    .with_context(|| format!("{}: opening VRRP sockets on {}", cfg.name, cfg.interface))?;
    let Some(mac) = link.mac else {
        bail!("{}: {} has no Ethernet address", cfg.name, cfg.interface);
    };
    let announcer = Announcer::open(&cfg.interface, link.index, mac, !v6, v6)
        .with_context(|| format!("{}: opening announce sockets", cfg.name))?;

    let hooks = Hooks::start(&cfg).with_context(|| format!("{}: script_user", cfg.name))?;
    let mut tracker = Tracker {
        link_up: HashMap::new(),
        proxy: tracking,
        scripts,
        l4: l4_tracking,
    };
    for t in &cfg.track {
        if let TrackTarget::Interface(i) = &t.what {
            let up = nl.link_by_name(i).await.map(|l| l.up).unwrap_or(false);
            tracker.link_up.insert(i.clone(), up);
        }
    }
    let mut health_rx = tracker.proxy.as_ref().map(|t| t.board.subscribe());
    let mut l4_rx = tracker.l4.as_ref().map(|t| t.board.subscribe());
    let (mut prio, prio_why) = effective_priority(&cfg, &tracker.down(&cfg));

    let mut router = VirtualRouter::new(params(&cfg, prio));
    router.set_primary_addr(src);
    let mut inst = Instance {
        router,
        cfg: cfg.clone(),
        nl,
        ifindex: link.index,
        sockets,
        announcer,
        src,
        drops: DropLog {
            last: HashMap::new(),
        },
        vips_installed: false,
        driver_drops: PacketDrops::default(),
        peers: BTreeMap::new(),
        last_change: None,
        prio_why: prio_why.clone(),
        hooks,
        follow,
    };
    info!(
        instance = %cfg.name,
        "{}: VRID {} on {} from {src}, priority {prio_why}, {}",
        cfg.name,
        cfg.vrid.get(),
        cfg.interface,
        if cfg.unicast_peers.is_empty() {
            "multicast".to_string()
        } else {
            format!("unicast to {:?}", cfg.unicast_peers)
        }
    );
    // A crash (kill -9) leaves the VIPs on the interface; a node starting as
    // backup must not keep answering for them. The address owner's VIP is
    // its own address and stays.
    if cfg.priority.get() != 255 {
        inst.remove_vips().await;
    }
    // Released, or held back by its sync group, before it started: it
    // waits as the lowest backup.
    let held = pending_release.or(inst.follow.as_ref().map(|_| Release::UntilReclaimed));
    if let Some(r) = held {
        inst.router.release(Instant::now().into_std(), r.until());
    }
    let mut own_link_up = link.up;
    if own_link_up {
        inst.router.startup(Instant::now().into_std());
    } else {
        warn!(instance = %cfg.name, state = "FAULT", "{}: {} is down, waiting for link", cfg.name, cfg.interface);
        if let Some(h) = &inst.hooks {
            h.fire(HookState::Fault, prio);
        }
    }
    inst.run_actions().await;
    if let Some(r) = ready {
        let _ = r.send(());
    }
    // The systemd watchdog pings only while this loop goes round.
    let beat = crate::run::liveness::register(format!("vrrp {}", cfg.name));
    let mut late = LateLog::new();

    loop {
        let mut deadline = inst
            .router
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        if hub.is_some() {
            // Refresh "secs ago" figures at least once a second.
            deadline = deadline.min(Instant::now() + Duration::from_secs(1));
        }
        if let Some(p) = beat.period() {
            deadline = deadline.min(Instant::now() + p);
        }
        let mut recompute = false;
        tokio::select! {
            r = inst.sockets.recv() => match r {
                Ok(pkt) => inst.on_packet(Instant::now(), pkt),
                Err(e) => debug!(instance = %cfg.name, "receive: {e}"),
            },
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let interval = Duration::from_millis(u64::from(inst.router.master_adver_interval_cs()) * 10);
                if let Some((worst, n)) = late.note(now, now.saturating_duration_since(deadline), interval) {
                    warn!(
                        instance = %cfg.name,
                        "{}: VRRP timer fired {} ms late ({n} wake-up(s) late by an advert interval or more since the last warning): \
                         the CPU is too busy for {} ms adverts, a backup may take over",
                        cfg.name,
                        worst.as_millis(),
                        interval.as_millis()
                    );
                }
                // Adverts that arrived while this thread waited for a CPU
                // come before the timer they would have reset: a backup
                // stalled past its master-down interval must not take over
                // from a master whose adverts are sitting in its socket.
                inst.read_queued(now);
                inst.router.handle_timeout(now.into_std());
            }
            Some(ev) = links.recv() => {
                if ev.index == inst.ifindex && ev.up != own_link_up {
                    own_link_up = ev.up;
                    let now = Instant::now().into_std();
                    if ev.up {
                        info!(instance = %cfg.name, "{}: {} is up again, starting", cfg.name, cfg.interface);
                        inst.router.startup(now);
                    } else {
                        warn!(instance = %cfg.name, state = "FAULT", "{} -> FAULT: {} link down", cfg.name, cfg.interface);
                        inst.router.link_down(now);
                        if let Some(h) = &inst.hooks {
                            h.fire(HookState::Fault, inst.router.effective_priority());
                        }
                        inst.last_change = Some((Instant::now(), format!("{} link down", cfg.interface)));
                    }
                }
                if tracker.link_up.contains_key(&ev.name) {
                    tracker.link_up.insert(ev.name.clone(), ev.up);
                    recompute = true;
                }
            }
            Some(_) = async {
                match health_rx.as_mut() {
                    Some(rx) => rx.changed().await.ok(),
                    None => std::future::pending().await,
                }
            } => { recompute = true; }
            Some(_) = async {
                match l4_rx.as_mut() {
                    Some(rx) => rx.changed().await.ok(),
                    None => std::future::pending().await,
                }
            } => { recompute = true; }
            true = async {
                match tracker.scripts.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => { recompute = true; }
            c = control.recv() => {
                let now = Instant::now();
                match c {
                    Some(Control::Shutdown) | None => {
                        // Stopping (hooks included) is not a stuck loop.
                        drop(beat);
                        inst.stop().await;
                        if inst.vips_installed {
                            inst.remove_vips().await;
                        }
                        if let Some(h) = &hub {
                            h.remove_vrrp(&cfg.name);
                        }
                        if let Some(h) = inst.hooks.take() {
                            h.fire(HookState::Stop, inst.router.effective_priority());
                            // Bounded by script_timeout per queued hook.
                            h.finish().await;
                        }
                        info!(instance = %cfg.name, "{}: stopped", cfg.name);
                        return Ok(());
                    }
                    Some(Control::Release(r)) => {
                        let why = match r.until() {
                            Some(u) => format!("released by operator for {:.0}s", u.saturating_duration_since(now.into_std()).as_secs_f64()),
                            None => "released by operator until reclaimed".to_string(),
                        };
                        info!(instance = %cfg.name, "{}: {why}", cfg.name);
                        inst.router.release(now.into_std(), r.until());
                    }
                    Some(Control::Reclaim) => {
                        if inst.router.released().is_some() {
                            inst.follow = None;
                            inst.router.reclaim(now.into_std());
                        }
                    }
                    Some(Control::Follow(Some(why))) => {
                        info!(instance = %cfg.name, "{}: {why}", cfg.name);
                        if inst.router.released().is_none() {
                            // As a release until reclaimed.
                            inst.router.release(now.into_std(), None);
                        }
                        inst.follow = Some(why);
                    }
                    Some(Control::Follow(None)) => {
                        if inst.follow.take().is_some() {
                            inst.router.reclaim(now.into_std());
                        }
                    }
                    Some(Control::Reconfigure(new)) => {
                        info!(instance = %cfg.name, "{}: reconfigured (priority {}, {} tracked item(s))", cfg.name, new.priority.get(), new.track.len());
                        for t in &new.track {
                            if let TrackTarget::Interface(i) = &t.what {
                                if !tracker.link_up.contains_key(i) {
                                    let up = inst.nl.link_by_name(i).await.map(|l| l.up).unwrap_or(false);
                                    tracker.link_up.insert(i.clone(), up);
                                }
                            }
                        }
                        cfg = *new;
                        inst.cfg = cfg.clone();
                        recompute = true;
                    }
                    Some(Control::Tracking(t)) => {
                        health_rx = Some(t.board.subscribe());
                        tracker.proxy = Some(t);
                        recompute = true;
                    }
                    Some(Control::L4Tracking(t)) => {
                        l4_rx = Some(t.board.subscribe());
                        tracker.l4 = Some(t);
                        recompute = true;
                    }
                    Some(Control::Scripts(w)) => {
                        tracker.scripts = Some(w);
                        recompute = true;
                    }
                }
            }
        }
        if recompute {
            let (p, why) = effective_priority(&cfg, &tracker.down(&cfg));
            if p != prio || why != inst.prio_why {
                prio = p;
                inst.prio_why = why;
                // Released: the router keeps it for the reclaim.
                inst.router.set_priority(Instant::now().into_std(), p);
            }
        }
        inst.run_actions().await;
        if let Some(h) = &hub {
            h.publish_vrrp(inst.status(&tracker, own_link_up));
        }
        beat.bump();
    }
}

/// What an instance keeps up to date while it waits to start.
struct WaitingControls<'a> {
    cfg: &'a mut VrrpInstance,
    tracking: &'a mut Option<ProxyTracking>,
    l4_tracking: &'a mut Option<ProxyTracking>,
    follow: &'a mut Option<String>,
    release: &'a mut Option<Release>,
    scripts: &'a mut Option<ScriptWatch>,
    control: &'a mut mpsc::Receiver<Control>,
    hub: Option<&'a StatusHub>,
}

/// `halo status` of an instance that has not started: INIT, and why.
fn waiting_status(cfg: &VrrpInstance, why: String) -> VrrpStatus {
    let p = cfg.priority.get();
    VrrpStatus {
        name: cfg.name.clone(),
        interface: cfg.interface.clone(),
        vrid: cfg.vrid.get(),
        version: match cfg.version {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        },
        state: VrrpState::Init,
        base_priority: p,
        effective_priority: p,
        priority_reason: format!("{p} = configured"),
        vips: cfg.virtual_ips.iter().map(|v| v.to_string()).collect(),
        explanation: why,
        ..VrrpStatus::default()
    }
}

/// Wait for an address to send adverts from: the interface's link-local
/// IPv6 address, usable (not tentative), or an IPv4 address that is not a
/// VIP; saying what it waits for. `None`: told to stop meanwhile. A
/// reload's changes are kept for the start; a release or reclaim has
/// nothing to act on yet.
async fn wait_for_source(
    nl: &Netlink,
    index: u32,
    v6: bool,
    vips: &[IpAddr],
    w: &mut WaitingControls<'_>,
) -> Result<Option<IpAddr>> {
    let (name, ifname) = (w.cfg.name.clone(), w.cfg.interface.clone());
    let (cfg, hub) = (w.cfg.clone(), w.hub);
    let say = |why: String, warning: bool| {
        if warning {
            warn!(instance = %name, "{name}: {why}");
        } else {
            info!(instance = %name, "{name}: {why}");
        }
        if let Some(h) = hub {
            h.publish_vrrp(waiting_status(&cfg, why));
        }
    };
    let link_local = async {
        nl.wait_link_local_v6(index, |s| {
            let why = match s {
                LinkLocal::Missing => format!(
                    "{ifname} has no link-local IPv6 address yet (no carrier, or IPv6 starting)"
                ),
                LinkLocal::Tentative(a) => {
                    format!("{a} is tentative (duplicate address detection is running)")
                }
                LinkLocal::DadFailed(a) => format!(
                    "duplicate address detection failed for {a}: another host on {ifname} uses it"
                ),
                LinkLocal::Usable(_) => return,
            };
            say(
                format!("{why}; waiting for its link-local IPv6 address"),
                matches!(s, LinkLocal::DadFailed(_)),
            );
        })
        .await
        .map(IpAddr::V6)
    };
    let primary = async {
        nl.wait_primary_v4(index, vips, || {
            say(
                format!("{ifname} has no IPv4 address yet (DHCP or the network configuration not done); waiting for an IPv4 address to send adverts from"),
                false,
            )
        })
        .await
        .map(IpAddr::V4)
    };
    let wait = async {
        if v6 {
            link_local.await
        } else {
            primary.await
        }
    };
    tokio::pin!(wait);
    loop {
        tokio::select! {
            r = &mut wait => {
                let a = r.with_context(|| format!("{name}: waiting for an address on {ifname}"))?;
                info!(instance = %name, "{name}: {a} on {ifname} is usable, starting");
                return Ok(Some(a));
            }
            c = w.control.recv() => match c {
                Some(Control::Shutdown) | None => {
                    if let Some(h) = w.hub {
                        h.remove_vrrp(&name);
                    }
                    info!(instance = %name, "{name}: stopped (it was waiting for an address to send from)");
                    return Ok(None);
                }
                Some(Control::Reconfigure(new)) => *w.cfg = *new,
                Some(Control::Tracking(t)) => *w.tracking = Some(t),
                Some(Control::L4Tracking(t)) => *w.l4_tracking = Some(t),
                Some(Control::Follow(f)) => *w.follow = f,
                Some(Control::Scripts(s)) => *w.scripts = Some(s),
                Some(Control::Release(r)) => {
                    info!(instance = %name, "{name}: released while waiting for an address to send from: it starts as the lowest backup");
                    *w.release = Some(r);
                }
                Some(Control::Reclaim) => *w.release = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Track, TrackTarget};

    fn inst(priority: u8, track: Vec<Track>) -> VrrpInstance {
        let text = format!(
            "[vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\nvirtual_ips = [\"192.0.2.100/24\"]\n"
        );
        let mut c = crate::config::parse_str("t.toml", &text)
            .unwrap()
            .vrrp
            .remove(0);
        c.track = track;
        c
    }

    #[test]
    fn effective_priority_explains_each_weight() {
        let c = inst(101, vec![]);
        let (p, why) = effective_priority(&c, &[("track web: no healthy server".into(), -2)]);
        assert_eq!(p, 99);
        assert_eq!(why, "99 = 101 - 2 (track web: no healthy server)");
        let (p, _) = effective_priority(&c, &[]);
        assert_eq!(p, 101);
    }

    #[test]
    fn drops_by_reason_names_only_what_happened() {
        let mine = PacketDrops {
            ttl: 2,
            malformed: 0,
        };
        let router = DropCounters {
            vip_mismatch: 3,
            auth_mismatch: 1,
            // Not shown: the driver demultiplexes VRIDs, and our own
            // adverts looped back are no news.
            wrong_vrid: 9,
            own_advert: 9,
            ..DropCounters::default()
        };
        let got: Vec<(DropReason, u64)> = mine.by_reason(&router).into_iter().collect();
        assert_eq!(
            got,
            [
                (DropReason::Auth, 1),
                (DropReason::Ttl, 2),
                (DropReason::VipSet, 3)
            ]
        );
    }

    #[test]
    fn late_wakeups_warned_once_per_ten_seconds_with_the_worst() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = LateLog::new();
        // Less than an advert interval late: nothing to say.
        assert_eq!(l.note(t0, ms(9), ms(10)), None);
        assert_eq!(l.note(t0, ms(15), ms(10)), Some((ms(15), 1)));
        // Within ten seconds: counted, not logged.
        assert_eq!(l.note(t0 + ms(1000), ms(40), ms(10)), None);
        assert_eq!(l.note(t0 + ms(2000), ms(20), ms(10)), None);
        assert_eq!(l.note(t0 + ms(3000), ms(5), ms(10)), None);
        // Then the worst and the count since the last warning.
        assert_eq!(l.note(t0 + ms(10_000), ms(12), ms(10)), Some((ms(40), 3)));
        assert_eq!(l.note(t0 + ms(20_000), ms(11), ms(10)), Some((ms(11), 1)));
    }

    #[test]
    fn effective_priority_clamps_to_valid_range() {
        let c = inst(
            10,
            vec![Track {
                what: TrackTarget::Proxy("web".into()),
                weight: -50,
            }],
        );
        let (p, _) = effective_priority(&c, &[("x".into(), -50)]);
        assert_eq!(p, 1, "never 0: that would mean 'leaving'");
        let c = inst(250, vec![]);
        let (p, _) = effective_priority(&c, &[("x".into(), 50)]);
        assert_eq!(p, 254, "never 255: only the owner has it");
    }
}
