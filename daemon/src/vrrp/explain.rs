//! The sentences behind the router's typed reasons: [`Why`] a state
//! changed, [`HandOver`], [`Drop`], and the [`Explanation`] of the state an
//! instance is in for `halo status`. Pure.
//!
//! The router ([`super::router`]) decides and reports variants with their
//! numbers; the words for the log and `halo status` are written here, so
//! the state machine's tests match variants and these tests match the
//! text (which the Python suites grep for: keep it stable).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::router::{Deferred, Drop, HandOver, PriorityWhy, Release, State, VirtualRouter, Why};

/// Why an instance is in its state now: the `why:` line of `halo status`
/// and `explanation` in its JSON. `priority` is the driver's sentence for
/// our tracked priority ("99 = 101 - 2 (track web: no healthy server)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explanation<'a> {
    /// FAULT.
    LinkDown {
        interface: &'a str,
    },
    /// The sync group holds it (its sentence).
    Held {
        why: &'a str,
    },
    /// `halo vrrp release`; `left`: none until reclaimed.
    Released {
        left: Option<Duration>,
    },
    Master {
        priority: &'a str,
    },
    PeerHigher {
        peer: IpAddr,
        theirs: u8,
        priority: &'a str,
    },
    /// Same priority, and the peer won the tie-break on its address.
    PeerEqual {
        peer: IpAddr,
        theirs: u8,
    },
    /// A lower master stays: preemption is off.
    PeerNoPreempt {
        peer: IpAddr,
        theirs: u8,
        priority: &'a str,
    },
    /// A lower master, to be preempted (delay, or its adverts discarded
    /// until the master down timer runs out).
    PreemptPending {
        peer: IpAddr,
        theirs: u8,
        priority: &'a str,
    },
    /// Backup and no master heard yet.
    WaitingForMaster,
    NotStarted,
}

impl<'a> Explanation<'a> {
    /// The explanation of `r`'s state at `now`. `link_up`: the instance's
    /// interface is up; `held`: why its sync group holds it, if it does.
    pub fn of(
        r: &VirtualRouter,
        now: Instant,
        interface: &'a str,
        link_up: bool,
        held: Option<&'a str>,
        priority: &'a str,
    ) -> Explanation<'a> {
        if !link_up {
            return Explanation::LinkDown { interface };
        }
        if let Some(why) = held {
            return Explanation::Held { why };
        }
        if let Some(release) = r.released() {
            return Explanation::Released {
                left: match release {
                    Release::Until(t) => Some(t.saturating_duration_since(now)),
                    Release::UntilReclaimed => None,
                },
            };
        }
        let ours = r.effective_priority();
        match (r.state(), r.master()) {
            (State::Master, _) => Explanation::Master { priority },
            (State::Backup, Some((peer, theirs))) if theirs > ours => Explanation::PeerHigher {
                peer,
                theirs,
                priority,
            },
            (State::Backup, Some((peer, theirs))) if theirs == ours => {
                Explanation::PeerEqual { peer, theirs }
            }
            (State::Backup, Some((peer, theirs))) if !r.params().preempt => {
                Explanation::PeerNoPreempt {
                    peer,
                    theirs,
                    priority,
                }
            }
            (State::Backup, Some((peer, theirs))) => Explanation::PreemptPending {
                peer,
                theirs,
                priority,
            },
            (State::Backup, None) => Explanation::WaitingForMaster,
            (State::Initialize, _) => Explanation::NotStarted,
        }
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Explanation::LinkDown { interface } => write!(f, "interface {interface} is down"),
            Explanation::Held { why } => write!(f, "{why} (priority 1)"),
            Explanation::Released { left: Some(left) } => write!(
                f,
                "released by operator for {:.0}s more (priority 1)",
                left.as_secs_f64()
            ),
            Explanation::Released { left: None } => {
                f.write_str("released by operator until `halo vrrp reclaim` (priority 1)")
            }
            Explanation::Master { priority } => {
                write!(f, "no router with a higher priority than ours ({priority})")
            }
            Explanation::PeerHigher {
                peer,
                theirs,
                priority,
            } => write!(f, "peer {peer} has priority {theirs} > {priority}"),
            Explanation::PeerEqual { peer, theirs } => write!(
                f,
                "peer {peer} has the same priority {theirs} and a higher address"
            ),
            Explanation::PeerNoPreempt {
                peer,
                theirs,
                priority,
            } => write!(
                f,
                "peer {peer} (priority {theirs}) is master and nopreempt is set; ours is {priority}"
            ),
            Explanation::PreemptPending {
                peer,
                theirs,
                priority,
            } => write!(
                f,
                "peer {peer} (priority {theirs}) is master; preemption pending (ours: {priority})"
            ),
            Explanation::WaitingForMaster => {
                f.write_str("waiting for a master's advert (master down interval)")
            }
            Explanation::NotStarted => f.write_str("not started"),
        }
    }
}

/// "3.61 s": durations in messages, to the centisecond.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::StartupOwner => f.write_str("startup as address owner (priority 255)"),
            Why::StartupWaiting { master_down } => write!(
                f,
                "startup, waiting {} for a master (master down interval)",
                secs(master_down)
            ),
            Why::MasterDown { last_master, after } => {
                f.write_str("no advert from ")?;
                match last_master {
                    Some(a) => write!(f, "{a}")?,
                    None => f.write_str("any master")?,
                }
                write!(f, " for {} (master down interval)", secs(after))
            }
            Why::MasterLeft { master } => write!(f, "master {master} sent priority 0 (shutdown)"),
            Why::Preempting {
                master,
                theirs,
                ours,
            } => write!(f, "preempting {master} (priority {theirs} < our {ours})"),
            Why::HigherPriority { from, theirs, ours } => {
                write!(f, "higher priority {theirs} from {from} > our {ours}")
            }
            Why::EqualPriority {
                from,
                priority,
                mine: Some(mine),
            } => write!(
                f,
                "equal priority {priority} from {from}, whose address is greater than our {mine}"
            ),
            Why::EqualPriority {
                from,
                priority,
                mine: None,
            } => write!(
                f,
                "equal priority {priority} from {from} and our own address is unknown"
            ),
            Why::Shutdown => f.write_str("shutdown"),
            Why::Released => f.write_str("released: handing over, staying backup at priority 1"),
            Why::LinkDown => f.write_str("link down"),
        }
    }
}

impl fmt::Display for PriorityWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriorityWhy::Tracking => "tracked objects changed",
            PriorityWhy::Released => "released",
            PriorityWhy::ReleaseOver => "release over",
        })
    }
}

impl fmt::Display for HandOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandOver::Heard { master, priority } => write!(
                f,
                "{master} is master now (priority {priority}); removing the VIPs"
            ),
            HandOver::TimedOut { waited } => write!(
                f,
                "no new master heard within {}; removing the VIPs",
                secs(*waited)
            ),
        }
    }
}

/// Milliseconds with one decimal: a grace at 10 ms adverts is 16.1 ms.
fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "master down timer ran out, but this router ran {} late while it waited (its thread or the whole host was stalled), so the silence of ",
            millis(self.late)
        )?;
        match self.master {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("any master")?,
        }
        write!(
            f,
            " proves nothing: waiting {} more for an advert before taking over",
            millis(self.grace)
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::Version;
    use crate::vrrp::router::RouterParams;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The log lines the Python suites and operators read.
    #[test]
    fn state_change_sentences() {
        let a = ip("192.0.2.11");
        let b = ip("192.0.2.12");
        let cases = [
            (Why::StartupOwner, "startup as address owner (priority 255)"),
            (
                Why::StartupWaiting {
                    master_down: Duration::from_micros(3_609_375),
                },
                "startup, waiting 3.61 s for a master (master down interval)",
            ),
            (
                Why::MasterDown {
                    last_master: None,
                    after: Duration::from_micros(3_609_375),
                },
                "no advert from any master for 3.61 s (master down interval)",
            ),
            (
                Why::MasterDown {
                    last_master: Some(a),
                    after: Duration::from_nanos(3_648_437_500),
                },
                "no advert from 192.0.2.11 for 3.65 s (master down interval)",
            ),
            (
                Why::MasterLeft { master: a },
                "master 192.0.2.11 sent priority 0 (shutdown)",
            ),
            (
                Why::Preempting {
                    master: b,
                    theirs: 90,
                    ours: 100,
                },
                "preempting 192.0.2.12 (priority 90 < our 100)",
            ),
            (
                Why::HigherPriority {
                    from: b,
                    theirs: 101,
                    ours: 100,
                },
                "higher priority 101 from 192.0.2.12 > our 100",
            ),
            (
                Why::EqualPriority {
                    from: b,
                    priority: 100,
                    mine: Some(a),
                },
                "equal priority 100 from 192.0.2.12, whose address is greater than our 192.0.2.11",
            ),
            (
                Why::EqualPriority {
                    from: b,
                    priority: 100,
                    mine: None,
                },
                "equal priority 100 from 192.0.2.12 and our own address is unknown",
            ),
            (Why::Shutdown, "shutdown"),
        ];
        for (why, text) in cases {
            assert_eq!(why.to_string(), text, "{why:?}");
        }
    }

    #[test]
    fn deferred_takeover_sentence() {
        let d = Deferred {
            master: Some(ip("192.0.2.11")),
            late: Duration::from_micros(482_250),
            grace: Duration::from_micros(16_093),
        };
        assert_eq!(
            d.to_string(),
            "master down timer ran out, but this router ran 482.2 ms late while it waited (its thread or the whole host \
             was stalled), so the silence of 192.0.2.11 proves nothing: waiting 16.1 ms more for an advert before taking over"
        );
    }

    #[test]
    fn hand_over_and_drop_sentences() {
        // tests/vrrp/test_failover.py looks for "is master now".
        let heard = HandOver::Heard {
            master: ip("192.0.2.12"),
            priority: 100,
        };
        assert_eq!(
            heard.to_string(),
            "192.0.2.12 is master now (priority 100); removing the VIPs"
        );
        let out = HandOver::TimedOut {
            waited: Duration::from_millis(1500),
        };
        assert_eq!(
            out.to_string(),
            "no new master heard within 1.50 s; removing the VIPs"
        );
        assert_eq!(
            Drop::VipMismatch {
                src: ip("192.0.2.12")
            }
            .to_string(),
            "192.0.2.12 advertises a different virtual address set"
        );
        assert_eq!(PriorityWhy::ReleaseOver.to_string(), "release over");
    }

    fn router(priority: u8, preempt: bool) -> VirtualRouter {
        let mut r = VirtualRouter::new(RouterParams {
            name: "VI_1".into(),
            version: Version::V3,
            vrid: 51,
            priority,
            advert_interval_cs: 100,
            preempt,
            preempt_delay: Duration::ZERO,
            vips: vec![ip("192.0.2.100")],
            auth: None,
            garp_repeat: 1,
            garp_interval: Duration::ZERO,
            garp_refresh: None,
        });
        r.set_primary_addr(ip("192.0.2.11"));
        r
    }

    /// `r` as a backup that heard `theirs` from 192.0.2.12.
    fn backup_of(mut r: VirtualRouter, t: Instant, theirs: u8) -> VirtualRouter {
        r.startup(t);
        let adv = r.make_advert(theirs, 100);
        r.handle_advert(t, ip("192.0.2.12"), &adv).unwrap();
        r
    }

    /// Which explanation each situation gets, and its exact words (the
    /// Python suites compare `explanation` in the JSON).
    #[test]
    fn explanations_by_situation() {
        let t = Instant::now();
        let b = ip("192.0.2.12");
        let prio = "100 = configured";
        let of =
            |r: &VirtualRouter, link_up, held| Explanation::of(r, t, "eth0", link_up, held, prio);
        let idle = router(100, true);
        assert_eq!(of(&idle, true, None), Explanation::NotStarted);
        assert_eq!(of(&idle, true, None).to_string(), "not started");
        let e = of(&idle, false, Some("following sync group g: IN is FAULT"));
        assert_eq!(e, Explanation::LinkDown { interface: "eth0" });
        assert_eq!(e.to_string(), "interface eth0 is down");

        let mut waiting = router(100, true);
        waiting.startup(t);
        assert_eq!(of(&waiting, true, None), Explanation::WaitingForMaster);

        let higher = backup_of(router(100, true), t, 101);
        let e = of(&higher, true, None);
        assert_eq!(
            e,
            Explanation::PeerHigher {
                peer: b,
                theirs: 101,
                priority: prio
            }
        );
        // tests/vrrp/test_failover.py compares this one whole.
        assert_eq!(
            e.to_string(),
            "peer 192.0.2.12 has priority 101 > 100 = configured"
        );

        let equal = backup_of(router(100, true), t, 100);
        assert_eq!(
            of(&equal, true, None).to_string(),
            "peer 192.0.2.12 has the same priority 100 and a higher address"
        );
        let nopreempt = backup_of(router(100, false), t, 90);
        assert_eq!(
            of(&nopreempt, true, None).to_string(),
            "peer 192.0.2.12 (priority 90) is master and nopreempt is set; ours is 100 = configured"
        );
        let pending = backup_of(router(100, true), t, 90);
        assert_eq!(
            of(&pending, true, None).to_string(),
            "peer 192.0.2.12 (priority 90) is master; preemption pending (ours: 100 = configured)"
        );

        let mut owner = router(255, true);
        owner.startup(t);
        assert_eq!(
            of(&owner, true, None).to_string(),
            "no router with a higher priority than ours (100 = configured)"
        );

        let mut released = backup_of(router(100, true), t, 101);
        released.release(t, Some(t + Duration::from_secs(60)));
        assert_eq!(
            of(&released, true, None).to_string(),
            "released by operator for 60s more (priority 1)"
        );
        released.release(t, None);
        assert_eq!(
            of(&released, true, None).to_string(),
            "released by operator until `halo vrrp reclaim` (priority 1)"
        );
        // The group's hold comes before the release it makes.
        assert_eq!(
            of(&released, true, Some("following sync group g: IN is FAULT")).to_string(),
            "following sync group g: IN is FAULT (priority 1)"
        );
    }
}
