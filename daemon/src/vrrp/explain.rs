//! The sentences behind the router's typed reasons: [`Why`] a state
//! changed, [`HandOver`] and [`Drop`]. Pure.
//!
//! The router ([`super::router`]) decides and reports variants with their
//! numbers; the words for the log and `halo status` are written here, so
//! the state machine's tests match variants and these tests match the
//! text (which the Python suites grep for: keep it stable).

use std::fmt;
use std::time::Duration;

use super::router::{Drop, HandOver, PriorityWhy, Why};

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
    use std::net::IpAddr;

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
}
