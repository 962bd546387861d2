//! One test per RFC transition and per timer formula, on a single router
//! driven by hand. Expected durations are written out as numbers, not
//! computed with the router's own functions.

use super::*;

const A: &str = "192.0.2.11";
const B: &str = "192.0.2.12";
const VIP: &str = "192.0.2.100";
/// Master_Down_Interval at 1 s adverts and priority 100: 3 x 1 s plus the
/// skew, (256 - 100) / 256 s.
const MASTER_DOWN: Duration = Duration::from_micros(3_609_375);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn params(version: Version, priority: u8, interval_cs: u16) -> RouterParams {
    RouterParams {
        name: "VI_1".into(),
        version,
        vrid: 51,
        priority,
        advert_interval_cs: interval_cs,
        preempt: true,
        preempt_delay: Duration::ZERO,
        vips: vec![ip(VIP)],
        auth: None,
        garp_repeat: 1,
        garp_interval: Duration::ZERO,
        garp_refresh: None,
    }
}

fn router(p: RouterParams) -> VirtualRouter {
    let mut r = VirtualRouter::new(p);
    r.set_primary_addr(ip(A));
    r
}

/// A takeover after B, the master last heard, fell silent.
fn silence_of_b() -> Why {
    Why::MasterDown {
        last_master: Some(ip(B)),
        after: MASTER_DOWN,
    }
}

fn drain(r: &mut VirtualRouter) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn advert(r: &VirtualRouter, priority: u8, interval_cs: u16) -> Advert {
    r.make_advert(priority, interval_cs)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn reason(actions: &[Action]) -> Why {
    actions
        .iter()
        .find_map(|a| match a {
            Action::StateChanged { why, .. } => Some(*why),
            _ => None,
        })
        .expect("a StateChanged action")
}

/// A backup, started at `t0`, with its actions drained.
fn backup(p: RouterParams, t0: Instant) -> VirtualRouter {
    let mut r = router(p);
    r.startup(t0);
    assert_eq!(r.state(), State::Backup);
    drain(&mut r);
    r
}

/// A master (it waited out the master down timer, its listen ticks on
/// time), actions drained.
fn master(p: RouterParams, t0: Instant) -> (VirtualRouter, Instant) {
    let mut r = backup(p, t0);
    let t = r.master_down_at().unwrap();
    run_to(&mut r, t);
    assert_eq!(r.state(), State::Master);
    drain(&mut r);
    (r, t)
}

/// A backup that runs on time up to `t`: every listen tick before `t` is
/// handled when due (a backup whose ticks are skipped did not run, and
/// doubts the silence: see the late-timer tests), then `t` itself.
/// Only the ticks: other deadlines are left for `t`, as one call at `t`
/// would handle them.
fn run_to(r: &mut VirtualRouter, t: Instant) {
    while r.state() == State::Backup {
        let (Some(next), Some(down)) = (r.poll_timeout(), r.master_down_at()) else {
            break;
        };
        // The earliest deadline is a tick if it is before the timer.
        if next >= t || next >= down {
            break;
        }
        r.handle_timeout(next);
    }
    r.handle_timeout(t);
}

// === timer arithmetic ===

#[test]
fn v3_skew_and_master_down_exact() {
    let r = router(params(Version::V3, 100, 100));
    // (256 - 100) * 100 / 256 = 60.9375 cs.
    assert_eq!(r.skew_time(), Duration::from_micros(609_375));
    assert_eq!(r.master_down_interval(), MASTER_DOWN);
    let r = router(params(Version::V3, 100, 300));
    // v3 skew scales with the interval: 182.8125 cs.
    assert_eq!(r.skew_time(), Duration::from_micros(1_828_125));
    assert_eq!(r.master_down_interval(), Duration::from_micros(10_828_125));
    let r = router(params(Version::V3, 255, 100));
    assert_eq!(r.skew_time(), ns(3_906_250)); // 0.390625 cs
    let r = router(params(Version::V3, 1, 4095));
    // 255 * 4095 / 256 cs = 40.7900390625 s; the half nanosecond is dropped.
    assert_eq!(r.skew_time(), ns(40_790_039_062));
}

#[test]
fn v2_skew_is_seconds_and_ignores_interval() {
    let r = router(params(Version::V2, 100, 300));
    // RFC 3768: (256 - 100) / 256 s = 0.609375 s whatever the interval.
    assert_eq!(r.skew_time(), Duration::from_micros(609_375));
    assert_eq!(r.master_down_interval(), Duration::from_micros(9_609_375));
    let r = router(params(Version::V2, 90, 100));
    assert_eq!(r.skew_time(), ns(648_437_500));
    assert_eq!(r.master_down_interval(), ns(3_648_437_500));
}

#[test]
fn state_display() {
    assert_eq!(State::Initialize.to_string(), "INIT");
    assert_eq!(State::Backup.to_string(), "BACKUP");
    assert_eq!(State::Master.to_string(), "MASTER");
}

// === Initialize ===

#[test]
fn new_router_is_idle() {
    let mut r = router(params(Version::V3, 100, 100));
    assert_eq!(r.state(), State::Initialize);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.poll_action(), None);
    assert_eq!(r.master(), None);
    let t = Instant::now();
    let adv = advert(&r, 100, 100);
    assert_eq!(r.handle_advert(t, ip(B), &adv), Err(Drop::NotRunning));
    r.handle_timeout(t + ms(100_000));
    r.shutdown(t);
    assert_eq!(r.poll_action(), None);
    assert_eq!(r.counters().dropped.not_running, 1);
}

#[test]
fn startup_non_owner_goes_backup_with_master_down_timer() {
    let t0 = Instant::now();
    let mut r = router(params(Version::V3, 100, 100));
    r.startup(t0);
    assert_eq!(r.state(), State::Backup);
    let acts = drain(&mut r);
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert!(matches!(
        &acts[0],
        Action::StateChanged {
            from: State::Initialize,
            to: State::Backup,
            why: Why::StartupWaiting { master_down }
        } if *master_down == MASTER_DOWN
    ));
    assert_eq!(r.master_down_at(), Some(t0 + MASTER_DOWN));
    // A second startup changes nothing.
    r.startup(t0 + ms(5));
    assert_eq!(r.poll_action(), None);
}

#[test]
fn startup_owner_goes_master_at_once() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 255, 100);
    p.garp_repeat = 2;
    p.garp_interval = ms(500);
    let mut r = router(p);
    r.startup(t0);
    assert_eq!(r.state(), State::Master);
    let acts = drain(&mut r);
    assert_eq!(
        acts,
        vec![
            Action::StateChanged {
                from: State::Initialize,
                to: State::Master,
                why: Why::StartupOwner
            },
            Action::AddVips,
            Action::SendAdvert {
                priority: 255,
                interval_cs: 100
            },
            Action::SendGarp,
        ]
    );
    // Next: the second GARP round at +0.5 s, before the advert at +1 s.
    assert_eq!(r.poll_timeout(), Some(t0 + ms(500)));
    assert_eq!(r.master(), Some((ip(A), 255)));
}

// === Backup ===

#[test]
fn backup_master_down_timer_fires_to_master() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let due = t0 + MASTER_DOWN;
    run_to(&mut r, due - ns(1));
    assert_eq!(r.state(), State::Backup, "not yet due");
    run_to(&mut r, due);
    let acts = drain(&mut r);
    assert_eq!(
        reason(&acts),
        Why::MasterDown {
            last_master: None,
            after: MASTER_DOWN
        }
    );
    assert_eq!(
        &acts[1..],
        &[
            Action::AddVips,
            Action::SendAdvert {
                priority: 100,
                interval_cs: 100
            },
            Action::SendGarp
        ]
    );
    assert_eq!(r.poll_timeout(), Some(due + ms(1000)));
    assert_eq!(r.counters().became_master, 1);
}

// === Backup: a Master_Down_Timer that fires late ===

/// A backup following B (priority 200, 1 s adverts) from `t1` = t0 + 1 s;
/// its Master_Down_Timer is due at the returned instant (t1 + 3.609375
/// s), its first listen tick at t1 + 1 s.
fn following_b(t0: Instant) -> (VirtualRouter, Instant) {
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let t1 = t0 + ms(1000);
    r.handle_advert(t1, ip(B), &advert(&r, 200, 100)).unwrap();
    drain(&mut r);
    (r, t1 + MASTER_DOWN)
}

#[test]
fn late_master_down_expiry_waits_a_grace_then_takes_over() {
    // The whole host stalled from just after the advert to 1.5 s past
    // the timer (a VM's vCPUs not scheduled): the silence it "saw" says
    // nothing about the master.
    let (mut r, due) = following_b(Instant::now());
    let woke = due + ms(1500);
    r.handle_timeout(woke);
    assert_eq!(r.state(), State::Backup, "a late expiry must not take over");
    // Grace: Master_Adver_Interval + Skew_Time = 1 s + 0.609375 s. Late:
    // the first listen tick, due at t1 + 1 s, handled at t1 + 5.109375 s.
    assert_eq!(
        drain(&mut r),
        vec![Action::TakeoverDeferred(Deferred {
            master: Some(ip(B)),
            late: Duration::from_micros(4_109_375),
            grace: Duration::from_micros(1_609_375),
        })]
    );
    let grace_end = woke + Duration::from_micros(1_609_375);
    assert_eq!(r.master_down_at(), Some(grace_end));
    // The listen tick comes first, on time.
    assert_eq!(r.poll_timeout(), Some(woke + ms(1000)));
    r.handle_timeout(grace_end - ns(1));
    assert_eq!(r.state(), State::Backup);
    assert_eq!(r.poll_action(), None);
    // Still nothing heard: the master is gone after all (RFC 5798 6.4.2).
    r.handle_timeout(grace_end);
    assert_eq!(r.state(), State::Master);
    assert_eq!(reason(&drain(&mut r)), silence_of_b());
}

#[test]
fn advert_during_the_grace_keeps_the_backup() {
    let (mut r, due) = following_b(Instant::now());
    let woke = due + ms(1700);
    r.handle_timeout(woke);
    assert_eq!(r.state(), State::Backup);
    // The master, frozen with us, wakes and speaks.
    let heard = woke + ms(3);
    r.handle_advert(heard, ip(B), &advert(&r, 200, 100))
        .unwrap();
    assert_eq!(r.master_down_at(), Some(heard + MASTER_DOWN));
    r.handle_timeout(woke + Duration::from_micros(1_609_375));
    assert_eq!(r.state(), State::Backup);
    // The advert re-armed the timer and the grace: the next late expiry
    // waits again.
    let again = heard + MASTER_DOWN + ms(2000);
    r.handle_timeout(again);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        r.master_down_at(),
        Some(again + Duration::from_micros(1_609_375))
    );
}

#[test]
fn second_late_expiry_in_a_row_takes_over() {
    // Stalled again through the whole grace: one grace per silence.
    let (mut r, due) = following_b(Instant::now());
    r.handle_timeout(due + ms(1000));
    assert_eq!(r.state(), State::Backup);
    r.handle_timeout(due + ms(1000) + Duration::from_micros(1_609_375) + ms(5000));
    assert_eq!(r.state(), State::Master);
}

#[test]
fn expiry_less_than_an_interval_late_takes_over_at_once() {
    // Timer wheel rounding or a short scheduling delay is not a stall
    // (the listen ticks before were on time).
    let (mut r, due) = following_b(Instant::now());
    run_to(&mut r, due + ms(999));
    assert_eq!(r.state(), State::Master);
    // Exactly one interval late is a stall.
    let (mut r, due) = following_b(Instant::now());
    run_to(&mut r, due + ms(1000));
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn stall_ending_at_the_timer_is_caught_by_the_listen_tick() {
    // The host froze from t1 + 0.5 s and ran again just when the timer
    // was due: the timer itself is on time, but the tick due at t1 + 1 s
    // comes 2.609375 s late, so most of the silence was not heard.
    // (Session 7's soak: master and backup woke in the same 30 us, the
    // master's timer 27 ms late, the backup's on time; it took over.)
    let (mut r, due) = following_b(Instant::now());
    let t1 = due - MASTER_DOWN;
    run_to(&mut r, t1 + ms(500));
    r.handle_timeout(due);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        drain(&mut r),
        vec![Action::TakeoverDeferred(Deferred {
            master: Some(ip(B)),
            late: Duration::from_micros(2_609_375),
            grace: Duration::from_micros(1_609_375),
        })]
    );
    // On time all along instead: master at the timer, as the RFC says.
    let (mut r, due) = following_b(Instant::now());
    run_to(&mut r, due);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn late_expiry_after_priority_zero_or_when_preempting_takes_over_at_once() {
    // The master said it is leaving: no silence to doubt.
    let (mut r, _) = following_b(Instant::now());
    let t = r.poll_timeout().unwrap() - ms(2000);
    r.handle_advert(t, ip(B), &advert(&r, 0, 100)).unwrap();
    r.handle_timeout(t + ms(5000));
    assert_eq!(r.state(), State::Master);
    // We heard the lower master and take over on purpose.
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let due = r.poll_timeout().unwrap();
    r.handle_advert(t0, ip(B), &advert(&r, 90, 100)).unwrap();
    r.handle_timeout(due + ms(5000));
    assert_eq!(r.state(), State::Master);
}

#[test]
fn backup_accepts_higher_and_equal_and_learns_v3_interval() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let t1 = t0 + ms(1000);
    // The master advertises every 2 s: Master_Down = 6 s + 156 * 200 / 256 cs.
    assert_eq!(r.handle_advert(t1, ip(B), &advert(&r, 150, 200)), Ok(()));
    assert_eq!(r.master_adver_interval_cs(), 200);
    assert_eq!(
        r.master_down_at(),
        Some(t1 + Duration::from_micros(7_218_750))
    );
    assert_eq!(r.master(), Some((ip(B), 150)));
    // Equal priority is accepted too (RFC: greater than or equal).
    let t2 = t1 + ms(2000);
    assert_eq!(r.handle_advert(t2, ip(B), &advert(&r, 100, 100)), Ok(()));
    assert_eq!(r.master_down_at(), Some(t2 + MASTER_DOWN));
    assert_eq!(r.state(), State::Backup);
    run_to(&mut r, t2 + MASTER_DOWN);
    assert_eq!(reason(&drain(&mut r)), silence_of_b());
}

#[test]
fn v2_backup_keeps_its_own_interval() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V2, 100, 300), t0);
    let adv = advert(&r, 200, 300);
    r.handle_advert(t0, ip(B), &adv).unwrap();
    assert_eq!(
        r.master_down_at(),
        Some(t0 + Duration::from_micros(9_609_375))
    );
}

#[test]
fn backup_priority_zero_takes_over_after_skew() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.handle_advert(t0, ip(B), &advert(&r, 200, 100)).unwrap();
    let t1 = t0 + ms(700);
    r.handle_advert(t1, ip(B), &advert(&r, 0, 100)).unwrap();
    assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_micros(609_375)));
    assert_eq!(r.master(), Some((ip(B), 0)));
    r.handle_timeout(t1 + Duration::from_micros(609_375));
    assert_eq!(r.state(), State::Master);
    assert_eq!(reason(&drain(&mut r)), Why::MasterLeft { master: ip(B) });
    assert_eq!(r.counters().priority_zero_received, 1);
}

#[test]
fn backup_discards_lower_priority_and_preempts_at_master_down() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let due = r.master_down_at().unwrap();
    for i in 0..3 {
        let adv = advert(&r, 90, 100);
        r.handle_advert(t0 + ms(1000 * i), ip(B), &adv).unwrap();
        assert_eq!(
            r.master_down_at(),
            Some(due),
            "timer not reset by a lower advert"
        );
    }
    assert_eq!(r.counters().lower_priority_discarded, 3);
    run_to(&mut r, due);
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        reason(&drain(&mut r)),
        Why::Preempting {
            master: ip(B),
            theirs: 90,
            ours: 100
        }
    );
}

#[test]
fn backup_without_preempt_accepts_lower_priority() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.preempt = false;
    let mut r = backup(p, t0);
    let t1 = t0 + ms(3000);
    r.handle_advert(t1, ip(B), &advert(&r, 90, 100)).unwrap();
    assert_eq!(r.master_down_at(), Some(t1 + MASTER_DOWN));
    // A priority rise does not preempt either.
    r.set_priority(t1, 120);
    assert_eq!(r.state(), State::Backup);
    // But master-down takeover still happens.
    run_to(&mut r, t1 + MASTER_DOWN);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn preempt_delay_holds_back_preemption_until_it_ends() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.preempt_delay = ms(10_000);
    let mut r = backup(p, t0);
    // A lower master is accepted during the delay (timer reset).
    for i in 0..10 {
        let t = t0 + ms(1000 * i);
        let adv = advert(&r, 90, 100);
        r.handle_advert(t, ip(B), &adv).unwrap();
        // The earlier of the reset master down timer and the delay's end.
        let down = t + MASTER_DOWN;
        assert_eq!(r.master_down_at(), Some(down));
        run_to(&mut r, t);
        assert_eq!(r.state(), State::Backup);
    }
    // Due at the end of the delay, even though an advert just reset the timer.
    assert_eq!(r.poll_timeout(), Some(t0 + ms(10_000)));
    run_to(&mut r, t0 + ms(10_000));
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        reason(&drain(&mut r)),
        Why::Preempting {
            master: ip(B),
            theirs: 90,
            ours: 100
        }
    );
}

#[test]
fn preempt_delay_does_not_delay_master_down() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.preempt_delay = ms(60_000);
    let mut r = backup(p, t0);
    assert_eq!(r.master_down_at(), Some(t0 + MASTER_DOWN));
    run_to(&mut r, t0 + MASTER_DOWN);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn preempt_delay_end_with_higher_master_changes_nothing() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.preempt_delay = ms(2_000);
    let mut r = backup(p, t0);
    r.handle_advert(t0 + ms(1000), ip(B), &advert(&r, 150, 100))
        .unwrap();
    run_to(&mut r, t0 + ms(2000));
    assert_eq!(r.state(), State::Backup);
    // The delay is over: the next deadline is the master down timer.
    assert_eq!(r.master_down_at(), Some(t0 + ms(1000) + MASTER_DOWN));
}

#[test]
fn backup_priority_rise_above_master_preempts_at_once() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.handle_advert(t0, ip(B), &advert(&r, 110, 100)).unwrap();
    r.set_priority(t0 + ms(10), 105);
    assert_eq!(r.state(), State::Backup, "105 < 110: no preemption");
    r.set_priority(t0 + ms(20), 120);
    assert_eq!(r.state(), State::Master);
    let acts = drain(&mut r);
    assert!(acts.contains(&Action::PriorityChanged {
        from: 105,
        to: 120,
        why: PriorityWhy::Tracking
    }));
    assert_eq!(
        reason(&acts),
        Why::Preempting {
            master: ip(B),
            theirs: 110,
            ours: 120
        }
    );
    assert!(acts.contains(&Action::SendAdvert {
        priority: 120,
        interval_cs: 100
    }));
}

// === Master ===

#[test]
fn master_adver_timer_sends_and_rearms() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    assert_eq!(r.poll_timeout(), Some(t + ms(1000)));
    r.handle_timeout(t + ms(999));
    assert_eq!(r.poll_action(), None);
    r.handle_timeout(t + ms(1000));
    assert_eq!(
        drain(&mut r),
        vec![Action::SendAdvert {
            priority: 100,
            interval_cs: 100
        }]
    );
    assert_eq!(r.poll_timeout(), Some(t + ms(2000)));
}

#[test]
fn master_answers_priority_zero_with_an_advert() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    let t1 = t + ms(300);
    r.handle_advert(t1, ip(B), &advert(&r, 0, 100)).unwrap();
    assert_eq!(r.state(), State::Master);
    // The advert asserts us; the GARP takes back hosts that followed the
    // other master (it says priority 0 when it steps down).
    assert_eq!(
        drain(&mut r),
        vec![
            Action::SendAdvert {
                priority: 100,
                interval_cs: 100
            },
            Action::SendGarp
        ]
    );
    assert_eq!(r.poll_timeout(), Some(t1 + ms(1000)));
}

#[test]
fn master_yields_to_higher_priority() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.garp_refresh = Some(ms(60_000));
    let (mut r, t) = master(p, t0);
    let t1 = t + ms(200);
    r.handle_advert(t1, ip(B), &advert(&r, 101, 50)).unwrap();
    assert_eq!(r.state(), State::Backup);
    let acts = drain(&mut r);
    assert_eq!(
        reason(&acts),
        Why::HigherPriority {
            from: ip(B),
            theirs: 101,
            ours: 100
        }
    );
    // Stepping down is announced with priority 0 so the winner re-announces
    // the VIPs (clients may have followed our GARP in a split brain).
    assert_eq!(
        acts[1..],
        [
            Action::SendAdvert {
                priority: 0,
                interval_cs: 100
            },
            Action::DelVips
        ]
    );
    // v3: the new master's 50 cs interval is learned: 1.5 s + 156*50/256 cs.
    assert_eq!(r.master_down_at(), Some(t1 + ns(1_804_687_500)));
    assert_eq!(r.master(), Some((ip(B), 101)));
    assert_eq!(r.counters().became_backup, 2);
}

#[test]
fn master_equal_priority_tie_break_on_address() {
    let t0 = Instant::now();
    // B (192.0.2.12) is greater than our A (192.0.2.11): we yield.
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.handle_advert(t, ip(B), &advert(&r, 100, 100)).unwrap();
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        reason(&drain(&mut r)),
        Why::EqualPriority {
            from: ip(B),
            priority: 100,
            mine: Some(ip(A))
        }
    );
    // 192.0.2.10 is smaller: we stay master and answer at once.
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.handle_advert(t, ip("192.0.2.10"), &advert(&r, 100, 100))
        .unwrap();
    assert_eq!(r.state(), State::Master);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::SendAdvert {
                priority: 100,
                interval_cs: 100
            },
            Action::SendGarp
        ]
    );
}

#[test]
fn master_tie_break_compares_ipv6_as_unsigned() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.vips = vec![ip("2001:db8::100")];
    let mut r = VirtualRouter::new(p);
    r.set_primary_addr(ip("fe80::9"));
    r.startup(t0);
    let t = r.poll_timeout().unwrap();
    r.handle_timeout(t);
    // fe80::10 > fe80::9 numerically (0x10 > 0x9), though not as text.
    let adv = r.make_advert(100, 100);
    r.handle_advert(t, ip("fe80::10"), &adv).unwrap();
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn master_without_known_address_yields_on_tie() {
    let t0 = Instant::now();
    let mut r = VirtualRouter::new(params(Version::V3, 100, 100));
    r.startup(t0);
    let t = r.poll_timeout().unwrap();
    r.handle_timeout(t);
    assert_eq!(r.master(), None, "own address unknown");
    let adv = r.make_advert(100, 100);
    r.handle_advert(t, ip("192.0.2.1"), &adv).unwrap();
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn master_answers_lower_priority_at_once() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    let t1 = t + ms(400);
    r.handle_advert(t1, ip(B), &advert(&r, 99, 100)).unwrap();
    assert_eq!(r.state(), State::Master);
    // The advert makes the other master back off; the GARP takes the VIPs'
    // ARP entries back from it (regression: after a healed split brain the
    // client kept the loser's MAC for 40 s).
    assert_eq!(
        drain(&mut r),
        vec![
            Action::SendAdvert {
                priority: 100,
                interval_cs: 100
            },
            Action::SendGarp
        ]
    );
    assert_eq!(r.poll_timeout(), Some(t1 + ms(1000)));
    assert_eq!(r.counters().lower_priority_answered, 1);
}

#[test]
fn master_priority_change_is_announced_at_once() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    let t1 = t + ms(250);
    r.set_priority(t1, 80);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::PriorityChanged {
                from: 100,
                to: 80,
                why: PriorityWhy::Tracking
            },
            Action::SendAdvert {
                priority: 80,
                interval_cs: 100
            }
        ]
    );
    assert_eq!(r.poll_timeout(), Some(t1 + ms(1000)));
    assert_eq!(r.effective_priority(), 80);
    // Unchanged priority: nothing.
    r.set_priority(t1, 80);
    assert_eq!(r.poll_action(), None);
    // 0 would mean "leaving" on the wire: clamped to 1.
    r.set_priority(t1, 0);
    assert_eq!(r.effective_priority(), 1);
}

#[test]
fn shutdown_from_master_hands_over_until_the_deadline() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.shutdown(t + ms(10));
    assert_eq!(r.state(), State::Initialize);
    // Priority 0 goes out; the VIPs stay for the new master.
    assert_eq!(
        drain(&mut r),
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                why: Why::Shutdown
            },
            Action::SendAdvert {
                priority: 0,
                interval_cs: 100
            },
        ]
    );
    assert!(r.leaving() && r.holds_vips());
    assert_eq!(r.counters().priority_zero_sent, 1);
    // Nobody takes over: the VIPs go after 1.5 advert intervals.
    let end = t + ms(10) + ms(1500);
    assert_eq!(r.poll_timeout(), Some(end));
    r.handle_timeout(end - ns(1));
    assert_eq!(r.poll_action(), None);
    r.handle_timeout(end);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::HandedOver(HandOver::TimedOut { waited: ms(1500) }),
            Action::DelVips
        ]
    );
    assert!(!r.leaving() && !r.holds_vips());
    assert_eq!(r.poll_timeout(), None);
    // It can start again.
    r.startup(t + ms(2000));
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn shutdown_hand_over_ends_when_the_new_master_speaks() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.shutdown(t);
    drain(&mut r);
    // What does not come from a new master does not end it: a priority-0
    // advert, another VRID, a different VIP set, our own advert looped back.
    let mut other = advert(&r, 90, 100);
    other.vrid = 52;
    assert_eq!(
        r.handle_advert(t + ms(100), ip(B), &other),
        Err(Drop::WrongVrid)
    );
    let mut other = advert(&r, 90, 100);
    other.addrs = vec![ip("192.0.2.200")];
    assert!(r.handle_advert(t + ms(100), ip(B), &other).is_err());
    let own = advert(&r, 100, 100);
    assert_eq!(
        r.handle_advert(t + ms(100), ip(A), &own),
        Err(Drop::OwnAdvert)
    );
    let zero = advert(&r, 0, 100);
    assert_eq!(r.handle_advert(t + ms(200), ip(B), &zero), Ok(()));
    assert!(r.leaving());
    assert_eq!(r.poll_action(), None);
    // B took over after its skew time and says so.
    let adv = advert(&r, 90, 100);
    assert_eq!(r.handle_advert(t + ms(650), ip(B), &adv), Ok(()));
    assert_eq!(
        drain(&mut r),
        vec![
            Action::HandedOver(HandOver::Heard {
                master: ip(B),
                priority: 90
            }),
            Action::DelVips
        ]
    );
    assert_eq!(r.poll_timeout(), None);
    // Done: from now on, not running.
    assert_eq!(
        r.handle_advert(t + ms(700), ip(B), &adv),
        Err(Drop::NotRunning)
    );
}

#[test]
fn hand_over_wait_is_capped_at_five_seconds() {
    let r = router(params(Version::V3, 100, 1000));
    assert_eq!(r.hand_over_wait(), ms(5000));
    let r = router(params(Version::V2, 100, 300));
    assert_eq!(r.hand_over_wait(), ms(4500));
}

#[test]
fn link_down_drops_the_vips_at_once() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.link_down(t);
    assert_eq!(
        reason(&drain(&mut r)[..1]),
        Why::LinkDown,
        "and the VIPs go at once"
    );
    assert!(!r.holds_vips());
    assert_eq!(r.poll_timeout(), None);
    // During a hand-over too.
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.shutdown(t);
    drain(&mut r);
    r.link_down(t + ms(100));
    assert_eq!(drain(&mut r), vec![Action::DelVips]);
    assert!(!r.leaving());
}

// === release ===

#[test]
fn release_from_master_hands_over_and_stays_backup_at_priority_one() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.release(t, None);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::PriorityChanged {
                from: 100,
                to: 1,
                why: PriorityWhy::Released
            },
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                why: Why::Released
            },
            Action::SendAdvert {
                priority: 0,
                interval_cs: 100
            },
        ]
    );
    assert_eq!(r.released(), Some(Release::UntilReclaimed));
    assert!(r.leaving());
    assert_eq!(r.effective_priority(), 1);
    // B (90) takes over: the VIPs go, and B is our master.
    let adv = advert(&r, 90, 100);
    r.handle_advert(t + ms(650), ip(B), &adv).unwrap();
    assert_eq!(
        drain(&mut r),
        vec![
            Action::HandedOver(HandOver::Heard {
                master: ip(B),
                priority: 90
            }),
            Action::DelVips
        ]
    );
    assert_eq!(r.master(), Some((ip(B), 90)));
    // Tracking changes are kept for later, not advertised or acted on.
    r.set_priority(t + ms(700), 120);
    assert_eq!(r.poll_action(), None);
    assert_eq!(r.effective_priority(), 1);
    // The reclaim returns to the tracked priority and preempts B at once.
    r.reclaim(t + ms(800));
    let acts = drain(&mut r);
    assert_eq!(
        acts[..3],
        [
            Action::ReleaseOver,
            Action::PriorityChanged {
                from: 1,
                to: 120,
                why: PriorityWhy::ReleaseOver
            },
            Action::StateChanged {
                from: State::Backup,
                to: State::Master,
                why: Why::Preempting {
                    master: ip(B),
                    theirs: 90,
                    ours: 120
                }
            },
        ]
    );
    assert!(acts.contains(&Action::AddVips));
    assert_eq!(r.released(), None);
    // A second reclaim does nothing.
    r.reclaim(t + ms(900));
    assert_eq!(r.poll_action(), None);
}

#[test]
fn timed_release_ends_by_itself() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.handle_advert(t0, ip(B), &advert(&r, 150, 100)).unwrap();
    let end = t0 + ms(2000);
    r.release(t0 + ms(10), Some(end));
    // A backup just lowers its priority: no state change, no advert.
    assert_eq!(
        drain(&mut r),
        vec![Action::PriorityChanged {
            from: 100,
            to: 1,
            why: PriorityWhy::Released
        }]
    );
    assert!(!r.leaving());
    // The master's adverts keep the master down timer later than the end.
    r.handle_advert(end - ms(500), ip(B), &advert(&r, 150, 100))
        .unwrap();
    assert_eq!(r.poll_timeout(), Some(end));
    r.handle_timeout(end);
    assert_eq!(
        drain(&mut r),
        vec![
            Action::ReleaseOver,
            Action::PriorityChanged {
                from: 1,
                to: 100,
                why: PriorityWhy::ReleaseOver
            }
        ]
    );
    assert_eq!(r.state(), State::Backup, "150 > 100: stays backup");
    assert_eq!(r.released(), None);
}

#[test]
fn released_again_only_moves_the_end() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.release(t0, Some(t0 + ms(1000)));
    drain(&mut r);
    r.release(t0, None);
    assert_eq!(r.poll_action(), None);
    assert_eq!(r.released(), Some(Release::UntilReclaimed));
    assert_eq!(r.master_down_at(), Some(t0 + MASTER_DOWN));
}

#[test]
fn released_before_startup_starts_as_the_lowest_backup() {
    let t0 = Instant::now();
    // Even the address owner: a release holds it at priority 1.
    let mut r = router(params(Version::V3, 255, 100));
    r.release(t0, Some(t0 + ms(60_000)));
    assert_eq!(r.state(), State::Initialize);
    // The release's end is a deadline even before startup (link down).
    assert_eq!(r.poll_timeout(), Some(t0 + ms(60_000)));
    r.startup(t0);
    assert_eq!(r.state(), State::Backup);
    // Priority 1: (256 - 1) * 100 / 256 cs of skew.
    assert_eq!(r.master_down_at(), Some(t0 + ms(3000) + ns(996_093_750)));
    // Alone on the link it still takes over.
    run_to(&mut r, t0 + ms(3000) + ns(996_093_750));
    assert_eq!(r.state(), State::Master);
    assert_eq!(r.effective_priority(), 1);
}

#[test]
fn master_again_during_a_hand_over_keeps_the_vips_it_holds() {
    let t0 = Instant::now();
    let (mut r, t) = master(params(Version::V3, 100, 100), t0);
    r.release(t, None);
    drain(&mut r);
    // Another router leaves too (priority 0): our skew at priority 1,
    // 0.99609375 s, runs out before the hand-over's 1.5 s.
    let zero = advert(&r, 0, 100);
    r.handle_advert(t + ms(100), ip(B), &zero).unwrap();
    assert!(r.leaving());
    let due = t + ms(100) + ns(996_093_750);
    assert_eq!(r.poll_timeout(), Some(due));
    r.handle_timeout(due);
    // Master again with the VIPs it never gave up: no second AddVips, and
    // the hand-over's DelVips never comes.
    assert_eq!(
        drain(&mut r),
        vec![
            Action::StateChanged {
                from: State::Backup,
                to: State::Master,
                why: Why::MasterLeft { master: ip(B) }
            },
            Action::SendAdvert {
                priority: 1,
                interval_cs: 100
            },
            Action::SendGarp
        ]
    );
    assert!(!r.leaving() && r.holds_vips());
    r.handle_timeout(t + ms(5000));
    assert!(!drain(&mut r).contains(&Action::DelVips));
}

#[test]
fn shutdown_from_backup_is_silent() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.shutdown(t0 + ms(10));
    let acts = drain(&mut r);
    assert_eq!(acts.len(), 1);
    assert_eq!(r.poll_timeout(), None);
}

// === GARP schedule ===

#[test]
fn garp_burst_then_refresh() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 255, 1000);
    p.garp_repeat = 3;
    p.garp_interval = ms(2000);
    p.garp_refresh = Some(ms(60_000));
    let mut r = router(p);
    r.startup(t0);
    let mut garps = Vec::new();
    let mut t = t0;
    let end = t0 + ms(130_000);
    loop {
        for a in drain(&mut r) {
            if a == Action::SendGarp {
                garps.push(t - t0);
            }
        }
        match r.poll_timeout() {
            Some(next) if next <= end => t = next,
            _ => break,
        }
        r.handle_timeout(t);
    }
    assert_eq!(
        garps,
        vec![ms(0), ms(2000), ms(4000), ms(64_000), ms(124_000)]
    );
    assert_eq!(r.counters().garp_rounds, 5);
}

#[test]
fn garp_repeat_zero_sends_none() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 255, 100);
    p.garp_repeat = 0;
    let mut r = router(p);
    r.startup(t0);
    assert!(!drain(&mut r).contains(&Action::SendGarp));
    assert_eq!(r.poll_timeout(), Some(t0 + ms(1000)));
}

#[test]
fn garp_stops_when_leaving_master() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.garp_repeat = 5;
    p.garp_interval = ms(100);
    p.garp_refresh = Some(ms(1000));
    let (mut r, t) = master(p, t0);
    r.handle_advert(t, ip(B), &advert(&r, 200, 100)).unwrap();
    drain(&mut r);
    r.handle_timeout(t + ms(150));
    assert_eq!(r.poll_action(), None);
}

// === receive checks ===

#[test]
fn receive_checks_drop_and_count() {
    let t0 = Instant::now();
    let mut p = params(Version::V2, 100, 100);
    p.auth = Some(*b"secret\0\0");
    let mut r = backup(p, t0);
    let good = advert(&r, 120, 100);
    let due = r.poll_timeout();

    let mut a = good.clone();
    a.vrid = 52;
    assert_eq!(r.handle_advert(t0, ip(B), &a), Err(Drop::WrongVrid));
    let mut a = good.clone();
    a.version = Version::V3;
    assert_eq!(r.handle_advert(t0, ip(B), &a), Err(Drop::VersionMismatch));
    let mut a = good.clone();
    a.auth = Some(*b"secreT\0\0");
    assert_eq!(r.handle_advert(t0, ip(B), &a), Err(Drop::AuthMismatch));
    a.auth = None;
    assert_eq!(r.handle_advert(t0, ip(B), &a), Err(Drop::AuthMismatch));
    let mut a = good.clone();
    a.interval_cs = 200;
    assert_eq!(r.handle_advert(t0, ip(B), &a), Err(Drop::IntervalMismatch));
    let mut a = good.clone();
    a.addrs.push(ip("192.0.2.101"));
    assert_eq!(
        r.handle_advert(t0, ip(B), &a),
        Err(Drop::VipMismatch { src: ip(B) })
    );
    assert_eq!(r.handle_advert(t0, ip(A), &good), Err(Drop::OwnAdvert));

    // None of them touched the timer or the master.
    assert_eq!(r.poll_timeout(), due);
    assert_eq!(r.master(), None);
    let d = &r.counters().dropped;
    assert_eq!(
        (
            d.wrong_vrid,
            d.version_mismatch,
            d.auth_mismatch,
            d.interval_mismatch
        ),
        (1, 1, 2, 1)
    );
    assert_eq!((d.vip_mismatch, d.own_advert, d.total()), (1, 1, 7));
    assert_eq!(r.counters().adverts_received, 0);

    assert_eq!(r.handle_advert(t0, ip(B), &good), Ok(()));
    assert_eq!(r.counters().adverts_received, 1);
}

#[test]
fn vip_set_is_compared_regardless_of_order() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.vips = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let mut r = backup(p, t0);
    let mut a = r.make_advert(120, 100);
    a.addrs.reverse();
    assert_eq!(r.handle_advert(t0, ip(B), &a), Ok(()));
}

#[test]
fn v3_interval_difference_is_not_a_drop() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    let a = r.make_advert(120, 37);
    assert_eq!(r.handle_advert(t0, ip(B), &a), Ok(()));
    assert_eq!(r.master_adver_interval_cs(), 37);
}

#[test]
fn v3_ignores_configured_auth() {
    let mut p = params(Version::V3, 100, 100);
    p.auth = Some(*b"unused\0\0");
    let r = router(p);
    assert_eq!(r.make_advert(100, 100).auth, None);
}

#[test]
fn absurd_durations_do_not_overflow() {
    let t0 = Instant::now();
    let mut p = params(Version::V3, 100, 100);
    p.preempt_delay = Duration::MAX;
    p.garp_repeat = 3;
    p.garp_interval = Duration::MAX;
    p.garp_refresh = Some(Duration::MAX);
    let (mut r, t) = master(p, t0);
    // The advert timer is the only near deadline.
    assert_eq!(r.poll_timeout(), Some(t + ms(1000)));
    r.handle_timeout(t + ms(1000));
    assert_eq!(r.state(), State::Master);
}

#[test]
fn priority_rise_does_not_preempt_on_a_discarded_lower_advert() {
    // We follow B (110); C (80, a leftover split-brain master) speaks; our
    // priority rises to 100 — above C, still below B: stay backup.
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 90, 100), t0);
    r.handle_advert(t0, ip(B), &advert(&r, 110, 100)).unwrap();
    r.handle_advert(t0 + ms(10), ip("192.0.2.13"), &advert(&r, 80, 100))
        .unwrap();
    assert_eq!(r.master(), Some((ip(B), 110)));
    r.set_priority(t0 + ms(20), 100);
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn master_shows_the_lower_router_being_preempted() {
    let t0 = Instant::now();
    let mut r = backup(params(Version::V3, 100, 100), t0);
    r.handle_advert(t0, ip(B), &advert(&r, 90, 100)).unwrap();
    assert_eq!(r.master(), Some((ip(B), 90)));
}
