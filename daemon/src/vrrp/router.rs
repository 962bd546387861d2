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
//! compute effective priorities from tracked objects, or log (the driver
//! turns [`Action::StateChanged`] reasons and [`Drop`]s into log lines).
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

/// RFC 5798 6.4 states.
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

/// What the router asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority and interval; the driver adds the
    /// VIP list, VRID, version and auth ([`VirtualRouter::make_advert`]).
    SendAdvert { priority: u8, interval_cs: u16 },
    /// One round of gratuitous ARP (IPv4) / unsolicited NA (IPv6) for every VIP.
    SendGarp,
    /// Install the VIPs on the interface. Always precedes the first SendGarp.
    AddVips,
    /// Remove the VIPs from the interface.
    DelVips,
    /// The state changed; `why` is a human explanation for the log.
    StateChanged { from: State, to: State, why: String },
    /// The effective priority changed, for the reason the driver gave.
    PriorityChanged { from: u8, to: u8, why: String },
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

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drop::WrongVrid => f.write_str("different virtual router id"),
            Drop::VersionMismatch => f.write_str("different VRRP version"),
            Drop::AuthMismatch => f.write_str("authentication mismatch"),
            Drop::IntervalMismatch => f.write_str("advert interval differs from ours"),
            Drop::VipMismatch { src } => {
                write!(f, "{src} advertises a different virtual address set")
            }
            Drop::NotRunning => f.write_str("instance not running"),
            Drop::OwnAdvert => f.write_str("our own advert"),
        }
    }
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
    state: State,
    effective: u8,
    /// RFC 5798 Master_Adver_Interval (cs): learned from the master in v3;
    /// always ours in v2 (differing adverts are dropped).
    master_adver_interval_cs: u16,
    /// The master as last heard from (Backup), for status and reasons.
    master: Option<(IpAddr, u8)>,
    /// Backup: why the Master_Down_Timer is running, for the message when
    /// it fires, and the interval it was set to.
    down_cause: DownCause,
    down_interval: Duration,
    master_down_at: Option<Instant>,
    adver_at: Option<Instant>,
    garp_at: Option<Instant>,
    garp_left: u32,
    /// While set, a backup does not preempt (keepalived `preempt_delay`).
    preempt_allowed_at: Option<Instant>,
    actions: VecDeque<Action>,
    counters: Counters,
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
            effective: p.priority,
            master_adver_interval_cs: p.advert_interval_cs,
            p,
            primary: None,
            vips_sorted,
            state: State::Initialize,
            master: None,
            down_cause: DownCause::Waiting,
            down_interval: Duration::ZERO,
            master_down_at: None,
            adver_at: None,
            garp_at: None,
            garp_left: 0,
            preempt_allowed_at: None,
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
        self.state
    }

    pub fn effective_priority(&self) -> u8 {
        self.effective
    }

    /// The current master: ourselves when Master (if our address is known),
    /// otherwise the sender of the last advert we accepted, with the
    /// priority it sent (0 while its shutdown is being taken over), or
    /// failing that the lower-priority master we are about to preempt.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        match self.state {
            State::Master => self.primary.map(|a| (a, self.effective)),
            State::Backup => self.master.or(match self.down_cause {
                DownCause::Preempting(addr, prio) => Some((addr, prio)),
                _ => None,
            }),
            State::Initialize => None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
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

    /// The advert the driver should encode for [`Action::SendAdvert`].
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
    /// has work; `None` in Initialize.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let preempt = match self.state {
            State::Backup => self.preempt_allowed_at,
            _ => None,
        };
        [self.master_down_at, self.adver_at, self.garp_at, preempt]
            .into_iter()
            .flatten()
            .min()
    }

    /// RFC 5798 6.4.1 / RFC 3768 6.4.1: the Startup event. Ignored unless
    /// in Initialize.
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        self.preempt_allowed_at =
            (!self.p.preempt_delay.is_zero()).then(|| later(now, self.p.preempt_delay));
        self.master = None;
        self.master_adver_interval_cs = self.p.advert_interval_cs;
        if self.effective == 255 {
            self.change_state(
                now,
                State::Master,
                "startup as address owner (priority 255)".into(),
            );
        } else {
            let why = format!(
                "startup, waiting {} for a master (master down interval)",
                secs(self.master_down_interval())
            );
            self.down_cause = DownCause::Waiting;
            self.change_state(now, State::Backup, why);
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
        }
        match self.state {
            State::Backup => self.backup_receive(now, src, adv),
            State::Master => self.master_receive(now, src, adv),
            // receive_checks refused it already.
            State::Initialize => {}
        }
        Ok(())
    }

    /// RFC 3768 7.1 / RFC 5798 7.1 checks that depend on our configuration.
    fn receive_checks(&self, src: IpAddr, adv: &Advert) -> Result<(), Drop> {
        if self.state == State::Initialize {
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
            self.master = Some((src, 0));
            // The master is leaving: take over after Skew_Time only, so the
            // highest-priority backup (smallest skew) wins the race.
            self.down_cause = DownCause::Shutdown(src);
            self.arm_master_down(now, self.skew_time());
        } else if !self.may_preempt(now) || adv.priority >= self.effective {
            self.master = Some((src, adv.priority));
            if self.p.version == Version::V3 {
                // The codec refuses 0; a hand-built advert must not make
                // the Master_Down_Interval vanish either.
                self.master_adver_interval_cs = adv.interval_cs.max(1);
            }
            self.down_cause = DownCause::Silence;
            self.arm_master_down(now, self.master_down_interval());
        } else {
            // Preempt_Mode and a lower priority: discard, so the
            // Master_Down_Timer runs out and we take over. Not recorded as
            // our master: with three routers mid-heal, the master we follow
            // may be a higher one, and a priority change must not preempt
            // on the strength of this one.
            self.counters.lower_priority_discarded += 1;
            self.down_cause = DownCause::Preempting(src, adv.priority);
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
                format!("higher priority {} from {src} > our {ours}", adv.priority)
            } else {
                match self.primary {
                    Some(mine) => format!(
                        "equal priority {ours} from {src}, whose address is greater than our {mine}"
                    ),
                    None => {
                        format!("equal priority {ours} from {src} and our own address is unknown")
                    }
                }
            };
            if self.p.version == Version::V3 {
                self.master_adver_interval_cs = adv.interval_cs.max(1);
            }
            self.master = Some((src, adv.priority));
            self.down_cause = DownCause::Silence;
            self.change_state(now, State::Backup, why);
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
        let preempt_due = self.preempt_allowed_at.is_some_and(|t| t <= now);
        if preempt_due {
            self.preempt_allowed_at = None;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if self.master_down_at.is_some_and(|t| t <= now) {
                    // RFC 5798 6.4.2: Master_Down_Timer fires -> Master.
                    let why = self.master_down_reason();
                    self.change_state(now, State::Master, why);
                } else if preempt_due {
                    self.preempt_if_master_lower(now);
                }
            }
            State::Master => {
                if self.adver_at.is_some_and(|t| t <= now) {
                    // RFC 5798 6.4.3: Adver_Timer fires -> send, reset.
                    self.send_advert(now);
                }
                if self.garp_at.is_some_and(|t| t <= now) {
                    self.garp_round(now);
                }
            }
        }
    }

    /// The effective priority changed (tracked objects went up or down).
    /// 0 is clamped to 1: priority 0 on the wire means "master leaving".
    pub fn set_priority(&mut self, now: Instant, effective: u8, why: String) {
        let to = effective.max(1);
        let from = self.effective;
        if to == from {
            return;
        }
        self.effective = to;
        self.actions
            .push_back(Action::PriorityChanged { from, to, why });
        match self.state {
            State::Initialize => {}
            // Announce it now: after a drop a higher backup can take over
            // without waiting for our next periodic advert.
            State::Master => self.send_advert(now),
            State::Backup => self.preempt_if_master_lower(now),
        }
    }

    /// RFC 5798 6.4.2 / 6.4.3 Shutdown event: a master sends priority 0 so
    /// a backup takes over after Skew_Time; either way -> Initialize.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state != State::Initialize {
            self.change_state(now, State::Initialize, "shutdown".into());
        }
    }

    /// Every state change goes through here, with the entry actions of the
    /// RFC for the new state.
    fn change_state(&mut self, now: Instant, to: State, why: String) {
        let from = self.state;
        self.state = to;
        self.counters.transitions += 1;
        self.actions
            .push_back(Action::StateChanged { from, to, why });
        match to {
            // RFC 5798 6.4.1 (address owner at startup) and 6.4.2
            // (Master_Down_Timer fires): send an advert, announce the VIPs,
            // start the Adver_Timer. The VIPs are installed first so the
            // announcements and the traffic they attract find them.
            State::Master => {
                self.counters.became_master += 1;
                self.master_down_at = None;
                self.master = None;
                self.down_cause = DownCause::Waiting;
                self.actions.push_back(Action::AddVips);
                self.send_advert(now);
                self.garp_left = self.p.garp_repeat;
                self.garp_at = None;
                if self.garp_left > 0 {
                    self.garp_round(now);
                } else {
                    self.schedule_garp(now);
                }
            }
            // RFC 5798 6.4.1 (startup, not owner) and 6.4.3 (higher
            // priority seen): cancel the Adver_Timer, start the
            // Master_Down_Timer; a former master stops answering for the VIPs.
            State::Backup => {
                self.counters.became_backup += 1;
                self.adver_at = None;
                self.garp_at = None;
                self.garp_left = 0;
                self.arm_master_down(now, self.master_down_interval());
                if from == State::Master {
                    // Stepping down for a better master: say so with
                    // priority 0 (as on shutdown), so the winner
                    // re-announces the VIPs. Hosts that followed our
                    // gratuitous ARP during a split brain would otherwise
                    // keep our MAC until their ARP entries expire.
                    self.push_advert(0, self.p.advert_interval_cs);
                    self.actions.push_back(Action::DelVips);
                }
            }
            // RFC 5798 6.4.2 / 6.4.3 Shutdown: cancel timers; a master
            // sends an advert with priority 0 and gives up the VIPs.
            State::Initialize => {
                if from == State::Master {
                    self.push_advert(0, self.p.advert_interval_cs);
                    self.actions.push_back(Action::DelVips);
                }
                self.master_down_at = None;
                self.adver_at = None;
                self.garp_at = None;
                self.garp_left = 0;
                self.preempt_allowed_at = None;
                self.master = None;
                self.master_adver_interval_cs = self.p.advert_interval_cs;
            }
        }
    }

    /// Preemption is on and no `preempt_delay` is pending.
    fn may_preempt(&self, now: Instant) -> bool {
        self.p.preempt && self.preempt_allowed_at.is_none_or(|t| now >= t)
    }

    /// Backup: take over now if allowed and the known master is lower.
    fn preempt_if_master_lower(&mut self, now: Instant) {
        if let Some((addr, prio)) = self.master {
            if prio != 0 && prio < self.effective && self.may_preempt(now) {
                let why = format!(
                    "preempting {addr} (priority {prio} < our {})",
                    self.effective
                );
                self.change_state(now, State::Master, why);
            }
        }
    }

    fn master_down_reason(&self) -> String {
        match self.down_cause {
            DownCause::Preempting(addr, prio) => {
                format!(
                    "preempting {addr} (priority {prio} < our {})",
                    self.effective
                )
            }
            DownCause::Shutdown(addr) => format!("master {addr} sent priority 0 (shutdown)"),
            DownCause::Silence | DownCause::Waiting => {
                let who = match self.master {
                    Some((addr, _)) => addr.to_string(),
                    None => "any master".into(),
                };
                format!(
                    "no advert from {who} for {} (master down interval)",
                    secs(self.down_interval)
                )
            }
        }
    }

    fn arm_master_down(&mut self, now: Instant, after: Duration) {
        self.down_interval = after;
        self.master_down_at = Some(later(now, after));
    }

    /// Master: send an advert now and restart the Adver_Timer.
    fn send_advert(&mut self, now: Instant) {
        self.push_advert(self.effective, self.p.advert_interval_cs);
        self.adver_at = Some(later(now, cs(self.p.advert_interval_cs)));
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

    /// One GARP round now, then schedule the next.
    /// A full gratuitous ARP / NA burst again, as on becoming master.
    fn reannounce(&mut self, now: Instant) {
        self.garp_left = self.p.garp_repeat;
        if self.garp_left > 0 {
            self.garp_round(now);
        }
    }

    fn garp_round(&mut self, now: Instant) {
        self.counters.garp_rounds += 1;
        self.actions.push_back(Action::SendGarp);
        self.garp_left = self.garp_left.saturating_sub(1);
        self.schedule_garp(now);
    }

    /// The next round: a repeat of the initial burst, else a refresh.
    fn schedule_garp(&mut self, now: Instant) {
        self.garp_at = if self.garp_left > 0 {
            Some(later(now, self.p.garp_interval))
        } else {
            self.p
                .garp_refresh
                .filter(|d| !d.is_zero())
                .map(|d| later(now, d))
        };
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

/// "3.61 s": durations in messages, to the centisecond.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
