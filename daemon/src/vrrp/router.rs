//! The VRRP state machine of one virtual router: RFC 5798 section 6.4 as
//! updated by RFC 9568 (v3), and RFC 3768 section 6.4 (v2).
//!
//! Pure and sans-IO, after quinn-proto: time comes in as `now`, packets come
//! in decoded ([`VirtualRouter::handle_advert`]), and what the router wants
//! done comes out through [`VirtualRouter::poll_action`] (send an advert,
//! announce the VIPs, install or remove them) and
//! [`VirtualRouter::poll_timeout`] (when to call
//! [`VirtualRouter::handle_timeout`] next). It reads no clock and touches no
//! socket, so a cluster of routers can be simulated on a virtual clock
//! (`vrrp::sim`).
//!
//! What it does not do: decode or encode bytes ([`crate::vrrp::packet`]),
//! check TTL/hop limit or IP protocol, demultiplex VRIDs on an interface,
//! compute effective priorities from tracked objects, or write sentences:
//! reasons come out as values ([`Why`], [`HandOver`], [`Drop`]) and
//! `vrrp::explain` words them for the driver's log and `halo status`.
//!
//! Deliberate choices where the RFCs leave room (each is keepalived's
//! behaviour, so halo and keepalived agree on a shared link):
//! - An advert whose VIP list differs from ours is dropped (RFC 5798 7.1
//!   says MAY), and reported as [`Drop::VipMismatch`] so the driver can name
//!   the misconfigured router.
//! - A master that receives a lower-priority advert answers at once with its
//!   own, so the other side backs off within one round trip instead of a
//!   full advert interval (heals a split brain quickly).
//! - `preempt_delay`: for that long after [`VirtualRouter::startup`] a
//!   backup accepts a lower-priority master as if preemption were off; when
//!   it ends, a backup that knows its master is lower preempts at once.
//!   Master-down takeover is never delayed.
//! - A backup whose effective priority rises above its master's preempts at
//!   once (when preemption is allowed) rather than waiting for the master's
//!   adverts to be discarded until Master_Down_Interval.
//! - A leaving master (shutdown, release) sends priority 0 but keeps its
//!   VIPs until the new master's first advert arrives, or for
//!   [`VirtualRouter::hand_over_wait`] (1.5 advert intervals, at most 5 s):
//!   the RFC removes them at once, leaving nobody answering for them
//!   during the backups' skew time.
//! - A release (`halo vrrp release`, a sync group's hold) holds the
//!   effective priority at 1: the router hands over if master, then stays
//!   a backup that still takes over when nobody else is there. Tracked
//!   priority changes are kept for the reclaim.
//! - A backup checks that it runs on time: besides its Master_Down_Timer
//!   it asks to be woken every Master_Adver_Interval (a listen tick). If
//!   one of those wake-ups, or the Master_Down_Timer itself, came a
//!   Master_Adver_Interval or more late since the master was last heard
//!   (its thread, or the whole host, did not run), the silence is not
//!   trusted: it waits once more, [`VirtualRouter::late_grace`], before
//!   taking over. See [`Deferred`] and `handle_timeout`.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::{Advert, Version};

/// Everything the state machine needs to know about one configured
/// instance. Built by the driver from a validated [`crate::config::VrrpInstance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterParams {
    /// Instance name from the config, for messages.
    pub name: String,
    pub version: Version,
    pub vrid: u8,
    /// Configured base priority, 1..=255 (255 = address owner). The
    /// effective priority starts here and moves with
    /// [`VirtualRouter::set_priority`].
    pub priority: u8,
    /// Our Advertisement_Interval in centiseconds (v2: a multiple of 100).
    pub advert_interval_cs: u16,
    /// RFC 5798 Preempt_Mode.
    pub preempt: bool,
    /// See the module docs; zero = none.
    pub preempt_delay: Duration,
    /// Virtual addresses, compared as a set with received adverts.
    pub vips: Vec<IpAddr>,
    /// v2 simple-text password; must match received adverts exactly.
    pub auth: Option<[u8; 8]>,
    /// Gratuitous ARP / unsolicited NA rounds on becoming master (0 = none).
    pub garp_repeat: u32,
    /// Spacing of those rounds.
    pub garp_interval: Duration,
    /// While master, one more round this often (`None` or zero = off).
    pub garp_refresh: Option<Duration>,
}

/// RFC 5798 6.4 states, as actions and status report them. The timers
/// of each state live in the router's private `Phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

/// Why the state changed, with the numbers that decided it. The sentences
/// for the log are written in `vrrp::explain`, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// RFC 5798 6.4.1: the address owner (priority 255) starts as master.
    StartupOwner,
    /// RFC 5798 6.4.1: anyone else starts as backup and waits this long
    /// (Master_Down_Interval) for a master.
    StartupWaiting { master_down: Duration },
    /// RFC 5798 6.4.2: the Master_Down_Timer ran out, `after` since the
    /// last advert of `last_master` (none heard: since we became backup).
    MasterDown {
        last_master: Option<IpAddr>,
        after: Duration,
    },
    /// The master sent priority 0 and we waited only Skew_Time.
    MasterLeft { master: IpAddr },
    /// Preempt_Mode: the master's priority is lower than ours.
    Preempting {
        master: IpAddr,
        theirs: u8,
        ours: u8,
    },
    /// RFC 5798 6.4.3: an advert with a higher priority than ours.
    HigherPriority { from: IpAddr, theirs: u8, ours: u8 },
    /// RFC 5798 6.4.3: the same priority from a greater primary address
    /// (`mine`: ours, `None` if unknown).
    EqualPriority {
        from: IpAddr,
        priority: u8,
        mine: Option<IpAddr>,
    },
    /// RFC 5798 6.4.2 / 6.4.3 Shutdown event (halo stops).
    Shutdown,
    /// `halo vrrp release`, or the sync group holds the instance: hand
    /// over and stay backup at priority 1.
    Released,
    /// The interface went down (the driver reports FAULT).
    LinkDown,
}

/// Why the effective priority changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityWhy {
    /// Tracked objects changed ([`VirtualRouter::set_priority`]); the
    /// driver knows which and says so.
    Tracking,
    /// A release holds the priority at 1.
    Released,
    /// The release ended: back to the tracked priority.
    ReleaseOver,
}

/// How a hand-over ended (the VIPs are removed right after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOver {
    /// The new master's first advert arrived.
    Heard { master: IpAddr, priority: u8 },
    /// Nobody took over within this wait.
    TimedOut { waited: Duration },
}

/// A backup's Master_Down_Timer ran out, but since the master was last
/// heard one of its timers (a listen tick, or the Master_Down_Timer
/// itself) was handled `late`, a Master_Adver_Interval or more: this
/// router (its thread, or the whole host: a VM whose vCPUs were not
/// scheduled) did not run for that long. The silence it saw proves
/// nothing: adverts sent while it was stalled may not have reached its
/// socket yet, and a master on the same host or hypervisor was likely
/// frozen with it and sends as soon as it runs. So it waits `grace` more
/// (once per silence) and takes over only if that passes without an
/// advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferred {
    /// The master we last heard (none: none since we became backup).
    pub master: Option<IpAddr>,
    /// The latest any of its timers was handled since then.
    pub late: Duration,
    pub grace: Duration,
}

/// A release in force (`halo vrrp release`, or a sync group's hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Until [`VirtualRouter::reclaim`].
    UntilReclaimed,
    /// Ends by itself at this instant (or at an earlier reclaim).
    Until(Instant),
}

impl Release {
    /// When it ends by itself (none: at the reclaim).
    pub fn until(self) -> Option<Instant> {
        match self {
            Release::UntilReclaimed => None,
            Release::Until(t) => Some(t),
        }
    }
}

/// What the router asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send [`VirtualRouter::make_advert`]`(priority, interval_cs)`.
    SendAdvert { priority: u8, interval_cs: u16 },
    /// One round of gratuitous ARP (IPv4) / unsolicited NA (IPv6) for every VIP.
    SendGarp,
    /// Install the VIPs on the interface. Always precedes the first SendGarp.
    AddVips,
    /// Remove the VIPs from the interface.
    DelVips,
    /// The state changed, and why.
    StateChanged { from: State, to: State, why: Why },
    /// The effective priority changed.
    PriorityChanged { from: u8, to: u8, why: PriorityWhy },
    /// A hand-over ended; `DelVips` follows.
    HandedOver(HandOver),
    /// A release ended (reclaimed, or its deadline passed).
    ReleaseOver,
    /// A late Master_Down_Timer: still backup, waiting the grace.
    TakeoverDeferred(Deferred),
}

/// Why a received advert was not used. The named reasons are the RFC's
/// receive checks (RFC 3768 7.1, RFC 5798 7.1) that depend on our config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// Another virtual router on the same link; the driver should normally
    /// demultiplex by VRID before calling us.
    WrongVrid,
    /// v2 advert for a v3 instance or the reverse.
    VersionMismatch,
    /// v2: auth type or password differs from ours.
    AuthMismatch,
    /// v2 only: Adver Int differs from ours (RFC 3768 7.1 MUST discard).
    IntervalMismatch,
    /// Same VRID, different VIP set: the sender is misconfigured.
    VipMismatch { src: IpAddr },
    /// The router is in Initialize (not started, or shut down).
    NotRunning,
    /// The source is our own primary address: our advert looped back.
    OwnAdvert,
}

/// Adverts dropped, by [`Drop`] reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    pub wrong_vrid: u64,
    pub version_mismatch: u64,
    pub auth_mismatch: u64,
    pub interval_mismatch: u64,
    pub vip_mismatch: u64,
    pub not_running: u64,
    pub own_advert: u64,
}

impl DropCounters {
    fn count(&mut self, d: Drop) {
        let c = match d {
            Drop::WrongVrid => &mut self.wrong_vrid,
            Drop::VersionMismatch => &mut self.version_mismatch,
            Drop::AuthMismatch => &mut self.auth_mismatch,
            Drop::IntervalMismatch => &mut self.interval_mismatch,
            Drop::VipMismatch { .. } => &mut self.vip_mismatch,
            Drop::NotRunning => &mut self.not_running,
            Drop::OwnAdvert => &mut self.own_advert,
        };
        *c += 1;
    }

    pub fn total(&self) -> u64 {
        self.wrong_vrid
            + self.version_mismatch
            + self.auth_mismatch
            + self.interval_mismatch
            + self.vip_mismatch
            + self.not_running
            + self.own_advert
    }
}

/// Running totals for status output and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts that passed the receive checks (whatever they then caused).
    pub adverts_received: u64,
    /// SendAdvert actions emitted (the driver may still fail to send).
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    /// Backup: lower-priority adverts discarded because we will preempt.
    pub lower_priority_discarded: u64,
    /// Master: lower-priority adverts answered with an immediate advert.
    pub lower_priority_answered: u64,
    /// SendGarp actions emitted.
    pub garp_rounds: u64,
    pub became_master: u64,
    pub became_backup: u64,
    /// All state changes, including to and from Initialize.
    pub transitions: u64,
    pub dropped: DropCounters,
}

/// One virtual router. See the module docs.
#[derive(Debug, Clone)]
pub struct VirtualRouter {
    p: RouterParams,
    /// Our primary address on the link (the advert source), for the
    /// equal-priority tie-break; set by the driver.
    primary: Option<IpAddr>,
    vips_sorted: Vec<IpAddr>,
    /// The RFC state with its timers.
    phase: Phase,
    /// The priority tracking asks for ([`VirtualRouter::set_priority`]).
    tracked: u8,
    /// The priority we advertise: `tracked`, or 1 while released.
    effective: u8,
    /// RFC 5798 Master_Adver_Interval (cs): learned from the master in v3;
    /// always ours in v2 (differing adverts are dropped).
    master_adver_interval_cs: u16,
    /// While in the future, a backup does not preempt (keepalived
    /// `preempt_delay`); set at startup, taken when it fires. It outlives
    /// a spell as master, so it is not part of a phase.
    preempt_allowed_at: Option<Instant>,
    /// After stepping down for a shutdown or a release, the VIPs stay
    /// until the new master is heard or this deadline passes (see the
    /// module docs). Not part of a phase: it spans the change to
    /// Initialize or Backup.
    leaving: Option<Instant>,
    released: Option<Release>,
    actions: VecDeque<Action>,
    counters: Counters,
}

/// A state and the timers that exist only in it (smoltcp's `Timer`):
/// changing state drops the old timers, none is cleared by hand.
#[derive(Debug, Clone)]
enum Phase {
    Initialize,
    Backup(Backup),
    Master(Master),
}

#[derive(Debug, Clone)]
struct Backup {
    /// RFC 5798 Master_Down_Timer.
    master_down_at: Instant,
    /// What set it last, and to how long, for the reason when it fires.
    cause: DownCause,
    after: Duration,
    /// The master as last heard from, for status and reasons.
    master: Option<(IpAddr, u8)>,
    /// The listen tick: wake up this often (Master_Adver_Interval) to
    /// see whether we run on time, re-armed whenever we run.
    listen_at: Instant,
    /// The latest a timer was handled since the timer was last armed.
    late: Duration,
    /// The timer ran out after a stall and was re-armed with the grace
    /// ([`Deferred`]); cleared whenever the timer is armed again.
    deferred: bool,
}

#[derive(Debug, Clone)]
struct Master {
    /// RFC 5798 Adver_Timer.
    advert_at: Instant,
    garp: Garp,
}

/// The gratuitous ARP / NA schedule of a master.
#[derive(Debug, Clone, Copy)]
struct Garp {
    /// The next round (none: no refresh configured).
    at: Option<Instant>,
    /// Rounds left of the current burst.
    left: u32,
}

/// What set the Master_Down_Timer last, so its expiry can say why we take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    /// Started (or fell back to Backup) and waiting for a master.
    Waiting,
    /// Normal: reset by the master's advert; expiry means silence.
    Silence,
    /// The master sent priority 0; the timer is Skew_Time.
    Shutdown(IpAddr),
    /// We discard the master's adverts because its priority is lower.
    Preempting(IpAddr, u8),
}

/// The longest a leaving master keeps its VIPs for the new one.
const HAND_OVER_MAX: Duration = Duration::from_secs(5);

// === impl VirtualRouter ===

impl VirtualRouter {
    /// A router in Initialize; nothing happens until [`startup`](Self::startup).
    /// Out-of-range values are clamped rather than refused (the config
    /// layer validates them): priority to 1..=255, interval to >= 1 cs.
    pub fn new(params: RouterParams) -> Self {
        let mut p = params;
        p.priority = p.priority.max(1);
        p.advert_interval_cs = p.advert_interval_cs.max(1);
        let mut vips_sorted = p.vips.clone();
        vips_sorted.sort();
        vips_sorted.dedup();
        VirtualRouter {
            tracked: p.priority,
            effective: p.priority,
            master_adver_interval_cs: p.advert_interval_cs,
            p,
            primary: None,
            vips_sorted,
            phase: Phase::Initialize,
            preempt_allowed_at: None,
            leaving: None,
            released: None,
            actions: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// Our primary address on the link: the source of our adverts. Needed
    /// for the RFC tie-break between equal priorities (the greater address
    /// wins); until it is set, a master yields to an equal-priority peer.
    pub fn set_primary_addr(&mut self, addr: IpAddr) {
        self.primary = Some(addr);
    }

    pub fn primary_addr(&self) -> Option<IpAddr> {
        self.primary
    }

    pub fn params(&self) -> &RouterParams {
        &self.p
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Initialize => State::Initialize,
            Phase::Backup(_) => State::Backup,
            Phase::Master(_) => State::Master,
        }
    }

    pub fn effective_priority(&self) -> u8 {
        self.effective
    }

    /// The release in force, if any.
    pub fn released(&self) -> Option<Release> {
        self.released
    }

    /// Stepped down but still holding the VIPs for the new master.
    pub fn leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// Whether the VIPs are ours (installed) by the router's actions:
    /// as master, and while leaving.
    pub fn holds_vips(&self) -> bool {
        self.state() == State::Master || self.leaving()
    }

    /// The current master: ourselves when Master (if our address is known),
    /// otherwise the sender of the last advert we accepted, with the
    /// priority it sent (0 while its shutdown is being taken over), or
    /// failing that the lower-priority master we are about to preempt.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        match &self.phase {
            Phase::Master(_) => self.primary.map(|a| (a, self.effective)),
            Phase::Backup(b) => b.master.or(match b.cause {
                DownCause::Preempting(addr, prio) => Some((addr, prio)),
                _ => None,
            }),
            Phase::Initialize => None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Backup: when the Master_Down_Timer runs out (or, after a stall,
    /// its grace; see [`Deferred`]). [`poll_timeout`](Self::poll_timeout)
    /// is earlier while the listen tick is.
    pub fn master_down_at(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Backup(b) => Some(b.master_down_at),
            _ => None,
        }
    }

    /// RFC 5798 Master_Adver_Interval in centiseconds.
    pub fn master_adver_interval_cs(&self) -> u16 {
        self.master_adver_interval_cs
    }

    /// RFC 5798 6.1 Skew_Time for our effective priority. v3:
    /// ((256 - Priority) * Master_Adver_Interval) / 256 centiseconds; v2
    /// (RFC 3768 6.1): (256 - Priority) / 256 seconds. Exact to the
    /// nanosecond (v3 can produce half nanoseconds; those are dropped).
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u64::from(self.effective);
        match self.p.version {
            // 1 cs = 10_000_000 ns.
            Version::V3 => Duration::from_nanos(
                weight * u64::from(self.master_adver_interval_cs) * 10_000_000 / 256,
            ),
            Version::V2 => Duration::from_nanos(weight * 1_000_000_000 / 256),
        }
    }

    /// RFC 5798 6.1 Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time
    /// (RFC 3768: 3 * Advertisement_Interval + Skew_Time).
    pub fn master_down_interval(&self) -> Duration {
        3 * cs(self.master_adver_interval_cs) + self.skew_time()
    }

    /// How long a backup whose Master_Down_Timer fired late waits more
    /// for an advert ([`Deferred`]): Master_Adver_Interval + Skew_Time.
    /// The interval because a running master sends within one interval of
    /// any instant, and one that was frozen with us sends as soon as it
    /// runs (its Adver_Timer is overdue too); the skew so that backups
    /// stalled together still take over in priority order, the highest
    /// first, whose advert then holds the others, as the RFC's
    /// Master_Down_Interval orders them. What it costs: a real failover
    /// is that much slower only when this backup was itself stalled by an
    /// interval or more when the timer came due (36.1 + 16.1 ms at 10 ms
    /// adverts, priority 100).
    pub fn late_grace(&self) -> Duration {
        cs(self.master_adver_interval_cs) + self.skew_time()
    }

    /// How long a leaving master keeps its VIPs at most: one and a half of
    /// our advert intervals (the backups take over after their skew time,
    /// under one interval), and never more than 5 s.
    pub fn hand_over_wait(&self) -> Duration {
        (cs(self.p.advert_interval_cs) * 3 / 2).min(HAND_OVER_MAX)
    }

    /// The advert the driver encodes for [`Action::SendAdvert`]: ours,
    /// with the VIP list, VRID, version and (v2) auth.
    pub fn make_advert(&self, priority: u8, interval_cs: u16) -> Advert {
        Advert {
            version: self.p.version,
            vrid: self.p.vrid,
            priority,
            interval_cs,
            addrs: self.p.vips.clone(),
            auth: match self.p.version {
                Version::V2 => self.p.auth,
                Version::V3 => None,
            },
        }
    }

    /// The next action for the driver, in the order they arose.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout)
    /// has work; `None` in Initialize unless a hand-over or a timed release
    /// is running.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (a, b) = match &self.phase {
            Phase::Initialize => (None, None),
            Phase::Backup(b) => (
                Some(b.master_down_at.min(b.listen_at)),
                self.preempt_allowed_at,
            ),
            Phase::Master(m) => (Some(m.advert_at), m.garp.at),
        };
        let release = match self.released {
            Some(Release::Until(t)) => Some(t),
            _ => None,
        };
        [a, b, self.leaving, release].into_iter().flatten().min()
    }

    /// RFC 5798 6.4.1 / RFC 3768 6.4.1: the Startup event. Ignored unless
    /// in Initialize.
    pub fn startup(&mut self, now: Instant) {
        if self.state() != State::Initialize {
            return;
        }
        self.preempt_allowed_at =
            (!self.p.preempt_delay.is_zero()).then(|| later(now, self.p.preempt_delay));
        self.master_adver_interval_cs = self.p.advert_interval_cs;
        if self.effective == 255 {
            self.change_state(now, State::Master, Why::StartupOwner);
        } else {
            let master_down = self.master_down_interval();
            self.change_state(now, State::Backup, Why::StartupWaiting { master_down });
        }
    }

    /// RFC 5798 6.4.2 / 6.4.3 "If an ADVERTISEMENT is received". `src` is
    /// the IP source of the packet. `Err` says why the advert was dropped
    /// (and counted); `Ok` means it was processed, whatever it caused.
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) -> Result<(), Drop> {
        if let Err(d) = self.receive_checks(src, adv) {
            self.counters.dropped.count(d);
            return Err(d);
        }
        self.counters.adverts_received += 1;
        if adv.priority == 0 {
            self.counters.priority_zero_received += 1;
        } else if self.leaving.is_some() {
            // The new master speaks (its gratuitous ARP went out with this
            // advert): the VIPs can go.
            self.hand_over_done(HandOver::Heard {
                master: src,
                priority: adv.priority,
            });
        }
        match self.state() {
            State::Backup => self.backup_receive(now, src, adv),
            State::Master => self.master_receive(now, src, adv),
            // Only a hand-over listens here.
            State::Initialize => {}
        }
        Ok(())
    }

    /// RFC 3768 7.1 / RFC 5798 7.1 checks that depend on our configuration.
    fn receive_checks(&self, src: IpAddr, adv: &Advert) -> Result<(), Drop> {
        if self.state() == State::Initialize && self.leaving.is_none() {
            return Err(Drop::NotRunning);
        }
        if Some(src) == self.primary {
            return Err(Drop::OwnAdvert);
        }
        if adv.vrid != self.p.vrid {
            return Err(Drop::WrongVrid);
        }
        if adv.version != self.p.version {
            return Err(Drop::VersionMismatch);
        }
        if self.p.version == Version::V2 {
            if adv.auth != self.p.auth {
                return Err(Drop::AuthMismatch);
            }
            if adv.interval_cs != self.p.advert_interval_cs {
                return Err(Drop::IntervalMismatch);
            }
        }
        let mut theirs = adv.addrs.clone();
        theirs.sort();
        theirs.dedup();
        if theirs != self.vips_sorted {
            return Err(Drop::VipMismatch { src });
        }
        Ok(())
    }

    /// RFC 5798 6.4.2 (as in RFC 9568), Backup receiving an advert.
    fn backup_receive(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == 0 {
            // The master is leaving: take over after Skew_Time only, so the
            // highest-priority backup (smallest skew) wins the race.
            self.follow_master(src, 0);
            self.arm_master_down(now, DownCause::Shutdown(src), self.skew_time());
        } else if !self.may_preempt(now) || adv.priority >= self.effective {
            if self.p.version == Version::V3 {
                // The codec refuses 0; a hand-built advert must not make
                // the Master_Down_Interval vanish either.
                self.master_adver_interval_cs = adv.interval_cs.max(1);
            }
            self.follow_master(src, adv.priority);
            self.arm_master_down(now, DownCause::Silence, self.master_down_interval());
        } else if let Phase::Backup(b) = &mut self.phase {
            // Preempt_Mode and a lower priority: discard, so the
            // Master_Down_Timer runs out and we take over. Not recorded as
            // our master: with three routers mid-heal, the master we follow
            // may be a higher one, and a priority change must not preempt
            // on the strength of this one.
            self.counters.lower_priority_discarded += 1;
            b.cause = DownCause::Preempting(src, adv.priority);
        }
    }

    /// RFC 5798 6.4.3 (as in RFC 9568), Master receiving an advert.
    fn master_receive(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        let ours = self.effective;
        if adv.priority == 0 {
            // A former master left while we are master (a healed split
            // brain, or a stale master shutting down): assert ourselves and
            // take the VIPs' ARP/ND entries back.
            self.send_advert(now);
            self.reannounce(now);
            return;
        }
        let higher = adv.priority > ours;
        // Equal priorities: the greater primary address wins, compared as
        // unsigned integers in network byte order (Ipv4Addr/Ipv6Addr Ord).
        let tie_lost = adv.priority == ours && self.primary.is_none_or(|mine| src > mine);
        if higher || tie_lost {
            let why = if higher {
                Why::HigherPriority {
                    from: src,
                    theirs: adv.priority,
                    ours,
                }
            } else {
                Why::EqualPriority {
                    from: src,
                    priority: ours,
                    mine: self.primary,
                }
            };
            if self.p.version == Version::V3 {
                self.master_adver_interval_cs = adv.interval_cs.max(1);
            }
            self.change_state(now, State::Backup, why);
            self.follow_master(src, adv.priority);
            if let Phase::Backup(b) = &mut self.phase {
                b.cause = DownCause::Silence;
            }
        } else {
            // Lower: RFC says discard; answering at once makes the other
            // master back off now rather than at our next advert. Another
            // master means hosts and switches may have learnt its MAC for
            // the VIPs (a healed split brain): announce them again, or
            // clients keep talking to the loser until their ARP entry
            // expires (keepalived does the same).
            self.counters.lower_priority_answered += 1;
            self.send_advert(now);
            self.reannounce(now);
        }
    }

    /// Fire every deadline that is due at `now`. Each timer fires at most
    /// once per call and is re-armed from `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.leaving.is_some_and(|t| t <= now) {
            let waited = self.hand_over_wait();
            self.hand_over_done(HandOver::TimedOut { waited });
        }
        if matches!(self.released, Some(Release::Until(t)) if t <= now) {
            self.reclaim(now);
        }
        let preempt_due = self.preempt_allowed_at.is_some_and(|t| t <= now);
        if preempt_due {
            self.preempt_allowed_at = None;
        }
        match &self.phase {
            Phase::Initialize => {}
            Phase::Backup(_) => {
                let interval = cs(self.master_adver_interval_cs);
                let grace = self.late_grace();
                let ours = self.effective;
                let Phase::Backup(b) = &mut self.phase else {
                    unreachable!("matched above")
                };
                // How late this call is for each due timer: a stall of
                // this thread or of the whole host.
                if b.listen_at <= now {
                    b.late = b.late.max(now - b.listen_at);
                    b.listen_at = later(now, interval);
                }
                if b.master_down_at <= now {
                    b.late = b.late.max(now - b.master_down_at);
                    // Only a silence is doubted: after a priority 0 the
                    // master said it left, and a backup preempting a lower
                    // master heard it and takes over on purpose.
                    let silence = matches!(b.cause, DownCause::Silence | DownCause::Waiting);
                    if silence && !b.deferred && b.late >= interval {
                        // Not a breach of RFC 5798 6.4.2 ("If the
                        // Master_Down_Timer fires, then: ... Transition
                        // to the Master state"): its timer stands for
                        // Master_Down_Interval of silence heard by a
                        // router that was listening. One of whose timers
                        // came an interval or more late was not running
                        // for part of it, so it heard no such silence; it
                        // listens again, as a router that has just
                        // started does (6.4.1 arms a whole
                        // Master_Down_Interval), only for less, and then
                        // takes over as 6.4.2 says.
                        let d = Deferred {
                            master: b.master.map(|(a, _)| a),
                            late: b.late,
                            grace,
                        };
                        b.deferred = true;
                        b.master_down_at = later(now, grace);
                        self.actions.push_back(Action::TakeoverDeferred(d));
                    } else {
                        // RFC 5798 6.4.2: Master_Down_Timer fires -> Master.
                        let why = master_down_reason(b, ours);
                        self.change_state(now, State::Master, why);
                    }
                } else if preempt_due {
                    self.preempt_if_master_lower(now);
                }
            }
            Phase::Master(m) => {
                let garp_due = m.garp.at.is_some_and(|t| t <= now);
                if m.advert_at <= now {
                    // RFC 5798 6.4.3: Adver_Timer fires -> send, reset.
                    self.send_advert(now);
                }
                if garp_due {
                    self.garp_round(now);
                }
            }
        }
    }

    /// The effective priority tracking asks for (tracked objects went up
    /// or down). 0 is clamped to 1: priority 0 on the wire means "master
    /// leaving". While released it is only remembered, for the reclaim.
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        self.tracked = priority.max(1);
        if self.released.is_none() {
            self.change_priority(now, self.tracked, PriorityWhy::Tracking);
        }
    }

    /// `halo vrrp release` (or a sync group's hold): a master hands over
    /// (priority 0, VIPs kept until the new master is heard); then, or at
    /// once if not master, it stays a backup at priority 1, which still
    /// takes over when nobody else is there. `until`: the release ends by
    /// itself then (none: at [`reclaim`](Self::reclaim)). Released
    /// already: only the end changes.
    pub fn release(&mut self, now: Instant, until: Option<Instant>) {
        let first = self.released.is_none();
        self.released = Some(match until {
            Some(t) => Release::Until(t),
            None => Release::UntilReclaimed,
        });
        if !first {
            return;
        }
        if self.effective != 1 {
            // Set first: as master, a priority change would be advertised.
            let from = self.effective;
            self.effective = 1;
            self.actions.push_back(Action::PriorityChanged {
                from,
                to: 1,
                why: PriorityWhy::Released,
            });
        }
        if self.state() == State::Master {
            self.step_down(now, State::Backup, Why::Released);
        }
    }

    /// End a release: back to the tracked priority, preempting at once
    /// if that is allowed and beats the master. Not released: nothing.
    pub fn reclaim(&mut self, now: Instant) {
        if self.released.take().is_none() {
            return;
        }
        self.actions.push_back(Action::ReleaseOver);
        self.change_priority(now, self.tracked, PriorityWhy::ReleaseOver);
    }

    /// RFC 5798 6.4.2 / 6.4.3 Shutdown event: a master sends priority 0 so
    /// a backup takes over after Skew_Time, and keeps its VIPs until it
    /// hears the new master (or [`hand_over_wait`](Self::hand_over_wait)
    /// passes); either way -> Initialize. The driver steps the router
    /// until [`leaving`](Self::leaving) is false before it exits.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state() {
            State::Master => self.step_down(now, State::Initialize, Why::Shutdown),
            State::Backup => self.change_state(now, State::Initialize, Why::Shutdown),
            State::Initialize => {}
        }
    }

    /// The interface went down: Initialize at once, VIPs removed at once
    /// (nobody can be handed over to through a dead link).
    pub fn link_down(&mut self, now: Instant) {
        let was_leaving = self.leaving.take().is_some();
        if self.state() != State::Initialize {
            self.change_state(now, State::Initialize, Why::LinkDown);
        }
        if was_leaving {
            self.actions.push_back(Action::DelVips);
        }
    }

    /// Every state change goes through here, with the exit actions of the
    /// old state and the entry actions of the RFC for the new one. The old
    /// state's timers go with it.
    fn change_state(&mut self, now: Instant, to: State, why: Why) {
        let from = self.state();
        self.counters.transitions += 1;
        self.actions
            .push_back(Action::StateChanged { from, to, why });
        if from == State::Master {
            // RFC 5798 6.4.2 / 6.4.3 Shutdown, and stepping down for a
            // better master: say so with priority 0, so a backup takes over
            // after its skew time, and the winner re-announces the VIPs
            // (hosts that followed our gratuitous ARP during a split brain
            // would otherwise keep our MAC until their ARP entries expire).
            // A hand-over keeps the VIPs until the new master is heard.
            self.push_advert(0, self.p.advert_interval_cs);
            if self.leaving.is_none() {
                self.actions.push_back(Action::DelVips);
            }
        }
        match to {
            // RFC 5798 6.4.1 (address owner at startup) and 6.4.2
            // (Master_Down_Timer fires): send an advert, announce the VIPs,
            // start the Adver_Timer. The VIPs are installed first so the
            // announcements and the traffic they attract find them.
            State::Master => {
                self.counters.became_master += 1;
                // Back before a hand-over ended: the VIPs are still there.
                if self.leaving.take().is_none() {
                    self.actions.push_back(Action::AddVips);
                }
                self.phase = Phase::Master(Master {
                    advert_at: now,
                    garp: Garp {
                        at: None,
                        left: self.p.garp_repeat,
                    },
                });
                self.send_advert(now);
                if self.p.garp_repeat > 0 {
                    self.garp_round(now);
                } else {
                    self.schedule_garp(now);
                }
            }
            // RFC 5798 6.4.1 (startup, not owner) and 6.4.3 (higher
            // priority seen): start the Master_Down_Timer (the Adver_Timer
            // went with the Master phase).
            State::Backup => {
                self.counters.became_backup += 1;
                let after = self.master_down_interval();
                self.phase = Phase::Backup(Backup {
                    master_down_at: later(now, after),
                    cause: DownCause::Waiting,
                    after,
                    master: None,
                    listen_at: later(now, cs(self.master_adver_interval_cs)),
                    late: Duration::ZERO,
                    deferred: false,
                });
            }
            // RFC 5798 6.4.2 / 6.4.3 Shutdown: the timers go with the phase.
            State::Initialize => {
                self.phase = Phase::Initialize;
                self.master_adver_interval_cs = self.p.advert_interval_cs;
            }
        }
    }

    /// Leave Master for `to` with a hand-over: the VIPs stay until the
    /// new master is heard or [`hand_over_wait`](Self::hand_over_wait)
    /// passes.
    fn step_down(&mut self, now: Instant, to: State, why: Why) {
        self.leaving = Some(later(now, self.hand_over_wait()));
        self.change_state(now, to, why);
    }

    fn hand_over_done(&mut self, how: HandOver) {
        self.leaving = None;
        self.actions.push_back(Action::HandedOver(how));
        self.actions.push_back(Action::DelVips);
    }

    fn change_priority(&mut self, now: Instant, to: u8, why: PriorityWhy) {
        let from = self.effective;
        if to == from {
            return;
        }
        self.effective = to;
        self.actions
            .push_back(Action::PriorityChanged { from, to, why });
        match self.state() {
            State::Initialize => {}
            // Announce it now: after a drop a higher backup can take over
            // without waiting for our next periodic advert.
            State::Master => self.send_advert(now),
            State::Backup => self.preempt_if_master_lower(now),
        }
    }

    /// Preemption is on and no `preempt_delay` is pending.
    fn may_preempt(&self, now: Instant) -> bool {
        self.p.preempt && self.preempt_allowed_at.is_none_or(|t| now >= t)
    }

    /// Backup: take over now if allowed and the known master is lower.
    fn preempt_if_master_lower(&mut self, now: Instant) {
        let Phase::Backup(Backup {
            master: Some((master, theirs)),
            ..
        }) = self.phase
        else {
            return;
        };
        let ours = self.effective;
        if theirs != 0 && theirs < ours && self.may_preempt(now) {
            let why = Why::Preempting {
                master,
                theirs,
                ours,
            };
            self.change_state(now, State::Master, why);
        }
    }

    /// Backup: `src` (with `priority`) is the master we follow.
    fn follow_master(&mut self, src: IpAddr, priority: u8) {
        if let Phase::Backup(b) = &mut self.phase {
            b.master = Some((src, priority));
        }
    }

    fn arm_master_down(&mut self, now: Instant, cause: DownCause, after: Duration) {
        if let Phase::Backup(b) = &mut self.phase {
            b.cause = cause;
            b.after = after;
            b.master_down_at = later(now, after);
            b.deferred = false;
            // We run now: the stall check starts over.
            b.late = Duration::ZERO;
            b.listen_at = later(now, cs(self.master_adver_interval_cs));
        }
    }

    /// Master: send an advert now and restart the Adver_Timer.
    fn send_advert(&mut self, now: Instant) {
        self.push_advert(self.effective, self.p.advert_interval_cs);
        let next = later(now, cs(self.p.advert_interval_cs));
        if let Phase::Master(m) = &mut self.phase {
            m.advert_at = next;
        }
    }

    fn push_advert(&mut self, priority: u8, interval_cs: u16) {
        self.counters.adverts_sent += 1;
        if priority == 0 {
            self.counters.priority_zero_sent += 1;
        }
        self.actions.push_back(Action::SendAdvert {
            priority,
            interval_cs,
        });
    }

    /// A full gratuitous ARP / NA burst again, as on becoming master.
    fn reannounce(&mut self, now: Instant) {
        if let Phase::Master(m) = &mut self.phase {
            m.garp.left = self.p.garp_repeat;
            if m.garp.left > 0 {
                self.garp_round(now);
            }
        }
    }

    /// One GARP round now, then schedule the next.
    fn garp_round(&mut self, now: Instant) {
        self.counters.garp_rounds += 1;
        self.actions.push_back(Action::SendGarp);
        if let Phase::Master(m) = &mut self.phase {
            m.garp.left = m.garp.left.saturating_sub(1);
        }
        self.schedule_garp(now);
    }

    /// The next round: a repeat of the initial burst, else a refresh.
    fn schedule_garp(&mut self, now: Instant) {
        let p = &self.p;
        if let Phase::Master(m) = &mut self.phase {
            m.garp.at = if m.garp.left > 0 {
                Some(later(now, p.garp_interval))
            } else {
                p.garp_refresh
                    .filter(|d| !d.is_zero())
                    .map(|d| later(now, d))
            };
        }
    }
}

/// Why a backup whose Master_Down_Timer ran out takes over (`ours`: our
/// effective priority, for a preemption).
fn master_down_reason(b: &Backup, ours: u8) -> Why {
    match b.cause {
        DownCause::Preempting(master, theirs) => Why::Preempting {
            master,
            theirs,
            ours,
        },
        DownCause::Shutdown(master) => Why::MasterLeft { master },
        DownCause::Silence | DownCause::Waiting => Why::MasterDown {
            last_master: b.master.map(|(a, _)| a),
            after: b.after,
        },
    }
}

/// `now + d`, total: an absurd duration (a config typo like a preempt
/// delay of u64::MAX seconds) means "not in this process's lifetime"
/// instead of an overflow panic.
fn later(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(CENTURY))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

fn cs(centis: u16) -> Duration {
    Duration::from_millis(u64::from(centis) * 10)
}

#[cfg(test)]
mod tests;
