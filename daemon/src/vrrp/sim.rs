//! Cluster simulation of `VirtualRouter`s: an in-memory wire, a virtual
//! clock that jumps to the earliest deadline (quinn's `Pair::step`), and
//! optional seeded packet loss (smoltcp's netsim). Test-only.
//!
//! Every advert is the router's own (`make_advert`, as the driver sends it)
//! through the real codec (`Advert::encode` then `Advert::decode`), and
//! after every step the simulation checks that each router holds its VIPs
//! exactly when it is Master or handing over, so any test here also checks
//! that the action stream keeps the driver's view consistent.
//!
//! Expected times are written out as numbers in the tests (not derived from
//! the router's own timer functions), so a wrong formula fails them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::{Advert, PacketCtx, Version, MCAST_V4};
use super::router::{Action, HandOver, PriorityWhy, RouterParams, State, VirtualRouter, Why};

struct Node {
    r: VirtualRouter,
    addr: IpAddr,
    vips_held: bool,
}

/// One recorded action.
#[derive(Debug, Clone)]
struct Event {
    at: Duration,
    node: usize,
    action: Action,
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    /// `link[i][j]`: packets from i reach j.
    link: Vec<Vec<bool>>,
    /// Per-mille loss on every delivery, with its generator.
    loss: Option<(XorShift, u64)>,
    log: Vec<Event>,
    delivered: u64,
}

/// 192.0.2.11, .12, ... in node order.
fn node_addr(i: usize) -> IpAddr {
    IpAddr::from([192, 0, 2, 11 + u8::try_from(i).unwrap()])
}

fn params(priority: u8) -> RouterParams {
    RouterParams {
        name: "VI_1".into(),
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        vips: vec!["192.0.2.100".parse().unwrap()],
        auth: None,
        garp_repeat: 2,
        garp_interval: Duration::from_millis(500),
        garp_refresh: Some(Duration::from_secs(30)),
    }
}

fn secs_f(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Sim {
    fn new(params: Vec<RouterParams>) -> Sim {
        let n = params.len();
        let t0 = Instant::now();
        let nodes = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut r = VirtualRouter::new(p);
                r.set_primary_addr(node_addr(i));
                Node {
                    r,
                    addr: node_addr(i),
                    vips_held: false,
                }
            })
            .collect();
        Sim {
            t0,
            now: t0,
            nodes,
            link: vec![vec![true; n]; n],
            loss: None,
            log: Vec::new(),
            delivered: 0,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn start(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].r.startup(now);
        self.flush();
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].r.shutdown(now);
        self.flush();
    }

    fn set_priority(&mut self, i: usize, p: u8) {
        let now = self.now;
        self.nodes[i].r.set_priority(now, p);
        self.flush();
    }

    /// `halo vrrp release` on node i, for `secs` (none: until reclaimed).
    fn release(&mut self, i: usize, secs: Option<f64>) {
        let now = self.now;
        self.nodes[i].r.release(now, secs.map(|s| now + secs_f(s)));
        self.flush();
    }

    fn reclaim(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].r.reclaim(now);
        self.flush();
    }

    /// Cut or restore both directions between every node of `a` and of `b`.
    fn connect(&mut self, a: &[usize], b: &[usize], up: bool) {
        for &i in a {
            for &j in b {
                self.link[i][j] = up;
                self.link[j][i] = up;
            }
        }
    }

    /// Carry out every pending action; deliver adverts (zero latency) and
    /// repeat until the cluster is quiet at this instant.
    fn flush(&mut self) {
        for _round in 0..1000 {
            let mut wire: Vec<(usize, Vec<u8>)> = Vec::new();
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].r.poll_action() {
                    match &a {
                        Action::SendAdvert {
                            priority,
                            interval_cs,
                        } => {
                            let adv = self.nodes[i].r.make_advert(*priority, *interval_cs);
                            let ctx = PacketCtx::new(self.nodes[i].addr, MCAST_V4.into());
                            wire.push((i, adv.try_encode(&ctx).expect("encodable advert")));
                        }
                        Action::AddVips => {
                            assert!(!self.nodes[i].vips_held, "AddVips twice");
                            self.nodes[i].vips_held = true;
                        }
                        Action::DelVips => {
                            assert!(self.nodes[i].vips_held, "DelVips without AddVips");
                            self.nodes[i].vips_held = false;
                        }
                        Action::SendGarp => {
                            assert!(self.nodes[i].vips_held, "GARP before AddVips");
                        }
                        Action::StateChanged { .. }
                        | Action::PriorityChanged { .. }
                        | Action::HandedOver(_)
                        | Action::ReleaseOver
                        | Action::TakeoverDeferred(_) => {}
                    }
                    self.log.push(Event {
                        at: self.elapsed(),
                        node: i,
                        action: a,
                    });
                }
            }
            if wire.is_empty() {
                self.check_invariants();
                return;
            }
            for (from, bytes) in wire {
                let src = self.nodes[from].addr;
                let ctx = PacketCtx::new(src, MCAST_V4.into());
                let adv = Advert::decode(&bytes, &ctx).expect("our own encoding decodes");
                for to in 0..self.nodes.len() {
                    if to == from || !self.link[from][to] || self.lost() {
                        continue;
                    }
                    self.delivered += 1;
                    let now = self.now;
                    // Drops (e.g. NotRunning for a node that is shut down)
                    // are the router's business; it counts them.
                    let _ = self.nodes[to].r.handle_advert(now, src, &adv);
                }
            }
        }
        panic!(
            "no quiet point after 1000 delivery rounds at {:?}",
            self.elapsed()
        );
    }

    fn lost(&mut self) -> bool {
        match &mut self.loss {
            Some((rng, per_mille)) => rng.next() % 1000 < *per_mille,
            None => false,
        }
    }

    fn check_invariants(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(
                n.vips_held,
                n.r.state() == State::Master || n.r.leaving(),
                "node {i} at {:?}: VIPs held {} in state {} (leaving: {})",
                self.elapsed(),
                n.vips_held,
                n.r.state(),
                n.r.leaving()
            );
        }
    }

    /// Jump to the earliest deadline and fire every router due then.
    /// Returns false when nothing is scheduled up to `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        let Some(next) = self.nodes.iter().filter_map(|n| n.r.poll_timeout()).min() else {
            return false;
        };
        if next > limit {
            return false;
        }
        assert!(next >= self.now, "deadline in the past");
        self.now = next;
        for i in 0..self.nodes.len() {
            if self.nodes[i].r.poll_timeout().is_some_and(|t| t <= next) {
                self.nodes[i].r.handle_timeout(next);
            }
        }
        self.flush();
        true
    }

    /// The whole host froze for `d` (a VM's vCPUs not scheduled, every
    /// router stopped at once): nothing runs and nothing is sent meanwhile;
    /// then every router wakes at the same instant with its timers overdue,
    /// in node order, before any advert of the others is delivered.
    fn stall_all(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for n in &mut self.nodes {
            n.r.handle_timeout(now);
        }
        self.flush();
    }

    /// Run until `at` (since t0), then leave the clock there.
    fn run_until(&mut self, at: Duration) {
        let limit = self.t0 + at;
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 1_000_000, "runaway simulation");
        }
        self.now = self.now.max(limit);
    }

    fn state(&self, i: usize) -> State {
        self.nodes[i].r.state()
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.state(i) == State::Master)
            .collect()
    }

    /// (time, to-state, why) of node i's state changes since `after`.
    fn changes(&self, i: usize, after: Duration) -> Vec<(Duration, State, Why)> {
        self.log
            .iter()
            .filter(|e| e.node == i && e.at >= after)
            .filter_map(|e| match &e.action {
                Action::StateChanged { to, why, .. } => Some((e.at, *to, *why)),
                _ => None,
            })
            .collect()
    }

    /// When node i last became Master.
    fn became_master_at(&self, i: usize) -> Option<Duration> {
        self.changes(i, Duration::ZERO)
            .into_iter()
            .rev()
            .find(|c| c.1 == State::Master)
            .map(|c| c.0)
    }
}

/// xorshift64*: seeded loss without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

// Master_Down_Interval at 100 cs, by priority: 3 s + (256 - p) / 256 s.
/// priority 100: 3.609375 s
const MDI_100: Duration = Duration::from_nanos(3_609_375_000);
/// priority 90: 3.6484375 s
const MDI_90: Duration = Duration::from_nanos(3_648_437_500);
/// priority 90 skew: 0.6484375 s
const SKEW_90: Duration = Duration::from_nanos(648_437_500);

/// A(100), B(90) started at 0; A is master from 3.609375 s.
fn pair() -> Sim {
    let mut sim = Sim::new(vec![params(100), params(90)]);
    sim.start_all();
    sim.run_until(secs_f(10.0));
    assert_eq!(sim.masters(), vec![0]);
    sim
}

#[test]
fn election_highest_priority_wins() {
    let mut sim = Sim::new(vec![params(80), params(100), params(90)]);
    sim.start_all();
    sim.run_until(secs_f(60.0));
    assert_eq!(sim.masters(), vec![1]);
    // The only election: node 1's master down timer, nobody else ever master.
    assert_eq!(sim.became_master_at(1), Some(MDI_100));
    assert_eq!(sim.became_master_at(0), None);
    assert_eq!(sim.became_master_at(2), None);
    assert_eq!(
        sim.changes(1, Duration::ZERO)[1].2,
        Why::MasterDown {
            last_master: None,
            after: MDI_100
        }
    );
}

#[test]
fn election_equal_priority_higher_address_wins() {
    let mut sim = Sim::new(vec![params(100), params(100), params(100)]);
    sim.start_all();
    sim.run_until(secs_f(60.0));
    // All three time out together; the tie-break leaves 192.0.2.13.
    assert_eq!(sim.masters(), vec![2]);
    assert_eq!(sim.became_master_at(2), Some(MDI_100));
    // And it settled at once: nothing changed after the first election.
    for i in 0..3 {
        assert!(sim.changes(i, MDI_100 + Duration::from_nanos(1)).is_empty());
    }
}

#[test]
fn priority_zero_handover_after_skew_time_only() {
    let mut sim = Sim::new(vec![params(100), params(90), params(80)]);
    sim.start_all();
    sim.run_until(secs_f(10.2));
    sim.shutdown(0);
    sim.run_until(secs_f(40.0));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.became_master_at(1), Some(secs_f(10.2) + SKEW_90));
    let why = sim.changes(1, secs_f(10.2))[0].2;
    assert_eq!(
        why,
        Why::MasterLeft {
            master: node_addr(0)
        }
    );
    // Node 2 (skew 0.6875 s) heard node 1 first and stayed backup.
    assert_eq!(sim.became_master_at(2), None);
}

#[test]
fn returning_higher_priority_router_preempts() {
    let mut sim = pair();
    sim.shutdown(0);
    sim.run_until(secs_f(20.0));
    assert_eq!(sim.masters(), vec![1]);
    sim.start(0);
    sim.run_until(secs_f(60.0));
    assert_eq!(sim.masters(), vec![0]);
    // A discards B's lower adverts, so its master down timer from startup
    // runs out: exactly one Master_Down_Interval after it came back.
    assert_eq!(sim.became_master_at(0), Some(secs_f(20.0) + MDI_100));
    let a = sim.changes(0, secs_f(20.0));
    assert_eq!(
        a[1].2,
        Why::Preempting {
            master: node_addr(1),
            theirs: 90,
            ours: 100
        }
    );
    let b = sim.changes(1, secs_f(20.0));
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0],
        (
            secs_f(20.0) + MDI_100,
            State::Backup,
            Why::HigherPriority {
                from: node_addr(0),
                theirs: 100,
                ours: 90
            }
        )
    );
}

#[test]
fn nopreempt_router_does_not_take_over() {
    let mut a = params(100);
    a.preempt = false;
    let mut sim = Sim::new(vec![a, params(90)]);
    sim.start_all();
    sim.run_until(secs_f(10.0));
    sim.shutdown(0);
    sim.run_until(secs_f(20.0));
    sim.start(0);
    sim.run_until(secs_f(300.0));
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.changes(0, secs_f(20.0)).len(), 1, "only INIT -> BACKUP");
    // It still takes over when the master goes away.
    sim.shutdown(1);
    sim.run_until(secs_f(310.0));
    assert_eq!(sim.masters(), vec![0]);
}

#[test]
fn preempt_delay_takes_over_only_after_the_delay() {
    let mut a = params(100);
    a.preempt_delay = Duration::from_secs(30);
    let mut sim = Sim::new(vec![a, params(90)]);
    // B alone first, so it is master when A starts.
    sim.start(1);
    sim.run_until(secs_f(20.0));
    assert_eq!(sim.masters(), vec![1]);
    sim.start(0);
    sim.run_until(secs_f(120.0));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.became_master_at(0), Some(secs_f(50.0)));
    assert_eq!(
        sim.changes(0, secs_f(50.0))[0].2,
        Why::Preempting {
            master: node_addr(1),
            theirs: 90,
            ours: 100
        }
    );
}

#[test]
fn lost_adverts_backup_takes_over_after_master_down_interval() {
    let mut sim = pair();
    // A sends at 3.609375 + k s; the last to reach B is at 9.609375 s.
    sim.run_until(secs_f(9.8));
    sim.link[0][1] = false;
    sim.run_until(secs_f(30.0));
    assert_eq!(
        sim.became_master_at(1),
        Some(secs_f(9.609375) + MDI_90),
        "13.2578125 s"
    );
    assert_eq!(
        sim.changes(1, secs_f(10.0))[0].2,
        Why::MasterDown {
            last_master: Some(node_addr(0)),
            after: MDI_90
        }
    );
    // A still hears B but its answers are lost: both are master.
    assert_eq!(sim.masters(), vec![0, 1]);
    sim.link[0][1] = true;
    sim.run_until(secs_f(40.0));
    assert_eq!(sim.masters(), vec![0]);
}

#[test]
fn whole_host_stall_changes_no_state() {
    // Master and backup frozen together for longer than the master down
    // interval: the backup wakes with its timer long overdue and no
    // advert, but the master was frozen too. It used to take over and hand
    // back at once (two state changes per stall). Node order is the order
    // they wake in: the master first, then the other way round.
    for backup_first in [false, true] {
        let mut sim = if backup_first {
            let mut sim = Sim::new(vec![params(90), params(100)]);
            sim.start_all();
            sim.run_until(secs_f(10.0));
            assert_eq!(sim.masters(), vec![1]);
            sim
        } else {
            pair()
        };
        let before = sim.log.len();
        for k in 0..5 {
            sim.run_until(secs_f(10.3 + 10.0 * f64::from(k)));
            sim.stall_all(secs_f(5.0));
        }
        // A stall that ends just as the backup's timer is due: the timer
        // is on time (0.1 ms late), its listen ticks in the stall are not.
        sim.run_until(secs_f(60.5));
        let b = if backup_first { 0 } else { 1 };
        let due = sim.nodes[b].r.master_down_at().expect("a backup");
        sim.stall_all(due + Duration::from_micros(100) - sim.now);
        sim.run_until(secs_f(90.0));
        let changes: Vec<_> = sim.log[before..]
            .iter()
            .filter(|e| matches!(e.action, Action::StateChanged { .. }))
            .map(|e| (e.at, e.node, e.action.clone()))
            .collect();
        assert!(
            changes.is_empty(),
            "backup_first {backup_first}: {changes:?}"
        );
    }
}

#[test]
fn split_brain_heals_to_one_master() {
    let mut sim = Sim::new(vec![params(100), params(90), params(80)]);
    sim.start_all();
    sim.run_until(secs_f(10.0));
    // {A} | {B, C}: B becomes master of its half.
    sim.connect(&[0], &[1, 2], false);
    sim.run_until(secs_f(30.0));
    assert_eq!(sim.masters(), vec![0, 1]);
    sim.connect(&[0], &[1, 2], true);
    let heal = secs_f(30.0);
    // Within one advert interval of the heal, one master again.
    sim.run_until(heal + Duration::from_secs(1));
    assert_eq!(sim.masters(), vec![0]);
    sim.run_until(secs_f(120.0));
    assert_eq!(sim.masters(), vec![0]);
    assert!(sim.changes(0, heal).is_empty(), "A never left master");
}

#[test]
fn split_brain_heals_when_lower_master_speaks_first() {
    // B's adverts fall just after the heal, A's later: A answers B at once.
    let mut sim = pair();
    sim.connect(&[0], &[1], false);
    sim.run_until(secs_f(20.0));
    assert_eq!(sim.masters(), vec![0, 1]);
    let b_sends = sim.became_master_at(1).unwrap();
    let a_sends = sim.became_master_at(0).unwrap();
    // Heal right before B's next advert.
    let frac = |d: Duration| d.as_nanos() % 1_000_000_000;
    assert_ne!(frac(a_sends), frac(b_sends));
    let heal = Duration::from_nanos((20_000_000_000 + frac(b_sends) - 1_000_000) as u64);
    sim.run_until(heal);
    sim.connect(&[0], &[1], true);
    sim.run_until(heal + Duration::from_millis(2));
    assert_eq!(sim.masters(), vec![0]);
    let a_answers = sim.nodes[0].r.counters().lower_priority_answered;
    assert!(a_answers >= 1, "A answered B's advert");
}

#[test]
fn master_priority_drop_hands_over_to_higher_backup() {
    let mut sim = pair();
    sim.set_priority(0, 80);
    sim.run_until(secs_f(30.0));
    assert_eq!(sim.masters(), vec![1]);
    // B discards A's priority-80 adverts; its timer, last reset by A's
    // priority-100 advert at 9.609375 s, runs out.
    assert_eq!(sim.became_master_at(1), Some(secs_f(9.609375) + MDI_90));
    assert_eq!(
        sim.changes(1, secs_f(10.0))[0].2,
        Why::Preempting {
            master: node_addr(0),
            theirs: 80,
            ours: 90
        }
    );
    assert!(sim.log.iter().any(|e| e.node == 0
        && e.action
            == Action::PriorityChanged {
                from: 100,
                to: 80,
                why: PriorityWhy::Tracking
            }));
    // Priority back up: A, now a backup of the lower B, preempts at once.
    sim.set_priority(0, 100);
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.became_master_at(0), Some(secs_f(30.0)));
}

#[test]
fn v2_cluster_elects_and_fails_over() {
    let v2 = |p: u8| RouterParams {
        version: Version::V2,
        advert_interval_cs: 300,
        auth: Some(*b"pw\0\0\0\0\0\0"),
        ..params(p)
    };
    let mut sim = Sim::new(vec![v2(100), v2(90)]);
    sim.start_all();
    sim.run_until(secs_f(60.0));
    assert_eq!(sim.masters(), vec![0]);
    // v2: 3 * 3 s + 156/256 s.
    assert_eq!(sim.became_master_at(0), Some(secs_f(9.609375)));
    sim.shutdown(0);
    sim.run_until(secs_f(70.0));
    assert_eq!(sim.became_master_at(1), Some(secs_f(60.0) + SKEW_90));
}

/// The instants node i did `action` since `after`.
fn times(sim: &Sim, i: usize, after: Duration, action: &Action) -> Vec<Duration> {
    sim.log
        .iter()
        .filter(|e| e.node == i && e.at >= after && &e.action == action)
        .map(|e| e.at)
        .collect()
}

#[test]
fn shutdown_keeps_the_vips_until_the_new_master_speaks() {
    let mut sim = pair();
    let stop = secs_f(10.2);
    sim.run_until(stop);
    sim.shutdown(0);
    // A still holds the VIP during B's skew time: nobody is without it.
    sim.run_until(stop + SKEW_90 - Duration::from_nanos(1));
    assert!(sim.nodes[0].vips_held && sim.nodes[0].r.leaving());
    sim.run_until(secs_f(30.0));
    assert_eq!(sim.masters(), vec![1]);
    // B became master and its first advert ended A's hand-over at once.
    let b_master = stop + SKEW_90;
    assert_eq!(sim.became_master_at(1), Some(b_master));
    assert_eq!(times(&sim, 0, stop, &Action::DelVips), vec![b_master]);
    assert!(sim.log.iter().any(|e| e.node == 0
        && e.action
            == Action::HandedOver(HandOver::Heard {
                master: node_addr(1),
                priority: 90
            })));
    assert!(!sim.nodes[0].vips_held && !sim.nodes[0].r.leaving());
}

#[test]
fn shutdown_alone_gives_the_vips_up_after_the_hand_over_wait() {
    let mut sim = pair();
    sim.connect(&[0], &[1], false);
    let stop = secs_f(10.2);
    sim.run_until(stop);
    sim.shutdown(0);
    sim.run_until(secs_f(12.0));
    // 1.5 advert intervals.
    assert_eq!(
        times(&sim, 0, stop, &Action::DelVips),
        vec![stop + secs_f(1.5)]
    );
    assert!(sim.log.iter().any(|e| e.node == 0
        && e.action
            == Action::HandedOver(HandOver::TimedOut {
                waited: secs_f(1.5)
            })));
}

#[test]
fn release_hands_over_and_reclaim_takes_back() {
    let mut sim = pair();
    let t = secs_f(10.2);
    sim.run_until(t);
    sim.release(0, None);
    assert_eq!(sim.changes(0, t)[0].1, State::Backup);
    assert_eq!(sim.changes(0, t)[0].2, Why::Released);
    sim.run_until(secs_f(100.0));
    // B took over after its skew time; A stayed backup at priority 1,
    // and gave the VIP up when B spoke.
    assert_eq!(sim.masters(), vec![1]);
    assert_eq!(sim.became_master_at(1), Some(t + SKEW_90));
    assert_eq!(times(&sim, 0, t, &Action::DelVips), vec![t + SKEW_90]);
    assert_eq!(sim.nodes[0].r.effective_priority(), 1);
    assert_eq!(sim.changes(0, t).len(), 1, "only MASTER -> BACKUP");
    // Reclaimed: A preempts B at once.
    sim.reclaim(0);
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(sim.became_master_at(0), Some(secs_f(100.0)));
    assert_eq!(sim.nodes[0].r.effective_priority(), 100);
}

#[test]
fn timed_release_ends_by_itself() {
    let mut sim = pair();
    let t = secs_f(10.2);
    sim.run_until(t);
    sim.release(0, Some(2.0));
    sim.run_until(secs_f(30.0));
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(
        times(&sim, 0, t, &Action::ReleaseOver),
        vec![t + secs_f(2.0)]
    );
    // Back at priority 100 it preempts B at once.
    assert_eq!(sim.became_master_at(0), Some(t + secs_f(2.0)));
    let b = sim.changes(1, t);
    assert_eq!(
        b[0].2,
        Why::MasterLeft {
            master: node_addr(0)
        }
    );
    assert_eq!(b[1].1, State::Backup);
}

#[test]
fn released_alone_still_takes_over() {
    let mut sim = pair();
    sim.shutdown(1);
    let t = secs_f(20.0);
    sim.run_until(t);
    sim.release(0, None);
    sim.run_until(secs_f(40.0));
    // Nobody took over: the VIP goes after the hand-over wait, and A, the
    // lowest backup, comes back one Master_Down_Interval at priority 1
    // (3 s + 255/256 s) after the release.
    assert_eq!(sim.masters(), vec![0]);
    assert_eq!(times(&sim, 0, t, &Action::DelVips), vec![t + secs_f(1.5)]);
    assert_eq!(
        sim.became_master_at(0),
        Some(t + Duration::from_nanos(3_996_093_750))
    );
    assert_eq!(sim.nodes[0].r.effective_priority(), 1);
}

#[test]
fn healed_split_brain_winner_re_announces_the_vips() {
    let mut sim = pair();
    sim.connect(&[0], &[1], false);
    sim.run_until(secs_f(20.0));
    assert_eq!(sim.masters(), vec![0, 1]);
    let heal = secs_f(20.0);
    sim.connect(&[0], &[1], true);
    sim.run_until(heal + secs_f(1.0));
    assert_eq!(sim.masters(), vec![0]);
    // The first advert after the heal decides it; B steps down with
    // priority 0 and A answers with a gratuitous ARP round at that
    // instant, so hosts that followed B come back at once.
    let b_left = sim.changes(1, heal)[0].0;
    assert!(sim.log.iter().any(|e| e.node == 1
        && e.at == b_left
        && e.action
            == Action::SendAdvert {
                priority: 0,
                interval_cs: 100
            }));
    assert!(
        times(&sim, 0, heal, &Action::SendGarp).contains(&b_left),
        "A re-announces when B steps down"
    );
}

#[test]
fn mismatched_vip_set_is_ignored_for_election() {
    let mut b = params(90);
    b.vips = vec!["192.0.2.200".parse().unwrap()];
    let mut sim = Sim::new(vec![params(100), b]);
    sim.start_all();
    sim.run_until(secs_f(30.0));
    // B drops A's adverts (keepalived does the same) and is master too.
    assert_eq!(sim.masters(), vec![0, 1]);
    assert!(sim.nodes[1].r.counters().dropped.vip_mismatch > 0);
}

#[test]
fn seeded_loss_then_clean_link_converges_to_highest() {
    for seed in 1..=20u64 {
        let mut sim = Sim::new(vec![params(150), params(100), params(200)]);
        sim.loss = Some((XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)), 300));
        sim.start_all();
        // The top router leaves and returns while packets are being lost.
        sim.run_until(secs_f(100.0));
        sim.shutdown(2);
        sim.run_until(secs_f(150.0));
        sim.start(2);
        sim.run_until(secs_f(300.0));
        assert!(sim.delivered > 0);
        sim.loss = None;
        // At most one advert interval plus a round trip to agree again.
        sim.run_until(secs_f(302.0));
        assert_eq!(sim.masters(), vec![2], "seed {seed}");
        sim.run_until(secs_f(400.0));
        assert_eq!(sim.masters(), vec![2], "seed {seed}");
        assert!(sim.changes(2, secs_f(302.0)).is_empty(), "seed {seed}");
    }
}

/// Random events against one router: arbitrary adverts (any priority,
/// interval, version, VIP set, source including our own), timer jumps,
/// priority changes, restarts. After every event the action stream must be
/// consistent with the state, and due timers must make progress.
#[test]
fn random_event_storm_keeps_invariants() {
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    let other: IpAddr = "192.0.2.200".parse().unwrap();
    let srcs = [node_addr(0), node_addr(1), node_addr(2), node_addr(3)];
    let (mut masters, mut accepted, mut dropped, mut handed_over) = (0, 0, 0, 0);
    for seed in 1..=300u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut pick = |n: u64| rng.next() % n;
        let version = if pick(2) == 0 {
            Version::V2
        } else {
            Version::V3
        };
        let p = RouterParams {
            version,
            priority: [1, 50, 100, 254, 255][pick(5) as usize],
            advert_interval_cs: if version == Version::V2 {
                100
            } else {
                [1, 100, 4095][pick(3) as usize]
            },
            preempt: pick(2) == 0,
            preempt_delay: Duration::from_secs([0, 5][pick(2) as usize]),
            auth: if version == Version::V2 && pick(2) == 0 {
                Some(*b"pw\0\0\0\0\0\0")
            } else {
                None
            },
            garp_repeat: pick(4) as u32,
            garp_interval: Duration::from_millis([0, 100][pick(2) as usize]),
            garp_refresh: [None, Some(Duration::ZERO), Some(Duration::from_secs(7))]
                [pick(3) as usize],
            ..params(100)
        };
        let mut r = VirtualRouter::new(p.clone());
        r.set_primary_addr(node_addr(1));
        let t0 = Instant::now();
        let mut now = t0;
        let mut held = false;
        let mut state = State::Initialize;
        for step in 0..2000 {
            match pick(10) {
                0..=3 => {
                    let mut adv = r.make_advert(
                        [0, 1, 50, 99, 100, 101, 200, 255][pick(8) as usize],
                        [1, 37, 100, 4095][pick(4) as usize],
                    );
                    match pick(12) {
                        0 => {
                            adv.version = if version == Version::V2 {
                                Version::V3
                            } else {
                                Version::V2
                            }
                        }
                        1 => adv.vrid = 52,
                        2 => adv.addrs = vec![other],
                        3 => adv.addrs = vec![vip, other],
                        4 => adv.auth = None,
                        _ => {}
                    }
                    let src = srcs[pick(4) as usize];
                    let _ = r.handle_advert(now, src, &adv);
                }
                4..=6 => {
                    if let Some(t) = r.poll_timeout() {
                        assert!(t >= t0, "seed {seed} step {step}");
                        now = now.max(t);
                    }
                    now += Duration::from_millis(pick(3) * 7);
                    // Due timers make progress: a few calls at one instant
                    // leave nothing due (GARP repeats at zero spacing fire
                    // one per call).
                    for _ in 0..8 {
                        r.handle_timeout(now);
                    }
                    assert!(
                        r.poll_timeout().is_none_or(|t| t > now),
                        "seed {seed} step {step}: stuck deadline"
                    );
                }
                7 => r.set_priority(now, pick(256) as u8),
                8 => match pick(8) {
                    0 => r.shutdown(now),
                    1 => r.link_down(now),
                    2 => r.release(now, None),
                    3 => r.release(now, Some(now + Duration::from_millis(pick(3000)))),
                    4 => r.reclaim(now),
                    _ => {}
                },
                _ => r.startup(now),
            }
            let mut left_master = false;
            while let Some(a) = r.poll_action() {
                match a {
                    Action::AddVips => {
                        assert!(!held, "seed {seed} step {step}: AddVips twice");
                        held = true;
                    }
                    Action::DelVips => {
                        assert!(held, "seed {seed} step {step}: DelVips without AddVips");
                        held = false;
                    }
                    Action::SendGarp => assert!(held, "seed {seed} step {step}: GARP without VIPs"),
                    Action::SendAdvert {
                        priority,
                        interval_cs,
                    } => {
                        assert_eq!(interval_cs, p.advert_interval_cs);
                        // Priority 0 only on the way out of Master.
                        assert!(priority != 0 || left_master, "seed {seed} step {step}");
                    }
                    Action::StateChanged { from, to, .. } => {
                        assert_eq!(from, state, "seed {seed} step {step}");
                        left_master = from == State::Master;
                        assert_ne!(from, to);
                        state = to;
                    }
                    Action::PriorityChanged { from, to, why } => {
                        assert_ne!(from, to);
                        assert_ne!(to, 0);
                        // Released: held at 1 whatever tracking says.
                        if why == PriorityWhy::Released {
                            assert_eq!(to, 1);
                        }
                    }
                    Action::HandedOver(_) => {
                        assert!(held, "seed {seed} step {step}: hand-over without VIPs");
                        handed_over += 1;
                    }
                    Action::ReleaseOver | Action::TakeoverDeferred(_) => {}
                }
            }
            assert_eq!(state, r.state(), "seed {seed} step {step}");
            assert_eq!(
                held,
                state == State::Master || r.leaving(),
                "seed {seed} step {step}"
            );
            if r.released().is_some() {
                assert_eq!(r.effective_priority(), 1, "seed {seed} step {step}");
            }
            match state {
                State::Initialize
                    if !r.leaving() && r.released().and_then(|r| r.until()).is_none() =>
                {
                    assert_eq!(r.poll_timeout(), None)
                }
                _ => assert!(r.poll_timeout().is_some()),
            }
        }
        masters += r.counters().became_master;
        accepted += r.counters().adverts_received;
        dropped += r.counters().dropped.total();
    }
    // The storm must exercise the interesting paths, not just drops.
    assert!(masters > 3000, "{masters} master transitions");
    assert!(accepted > 50_000, "{accepted} adverts accepted");
    assert!(dropped > 20_000, "{dropped} adverts dropped");
    assert!(handed_over > 1000, "{handed_over} hand-overs");
}
