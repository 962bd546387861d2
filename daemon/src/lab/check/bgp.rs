//! `halo lab check 11` (docs/labs/11-bgp-ecmp.md): drain lb2 of a BGP lab
//! (`halo lab up --bgp --lbs 3`) for maintenance without taking it down:
//! its halo still runs but has withdrawn the anycast address by hand, the
//! router's ECMP route goes through the other LBs only, they all announce,
//! and the client still gets pages through the anycast address.
//!
//! [`judge`] is pure over an [`Observed`]; [`observe`] reads the router's
//! route table, each halo's control socket and a request from the client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use super::super::bgp::ANYCAST;
use super::super::bgp_run::router_lbs;
use super::super::probe;
use super::super::running::{snapshot, Running};
use super::{point, Point};

pub const EXERCISE: u8 = 11;
pub const TITLE: &str = "BGP/ECMP: drain lb2 without taking it down";
/// The LB the exercise drains.
pub const DRAINED: u8 = 2;

/// An LB's `[anycast]` address as its halo reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anycast {
    /// announced, draining or withdrawn.
    pub state: String,
    pub by_hand: bool,
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub lbs: Vec<u8>,
    /// The LBs the router's route to the anycast address goes through;
    /// `None` without a router (not a `--bgp` lab).
    pub hops: Option<Vec<u8>>,
    /// Per LB: `None` if its halo does not answer, else its first
    /// `[anycast]` address (`None` inside: it has none).
    pub anycast: Vec<(u8, Option<Option<Anycast>>)>,
    /// `GET /` from the client through the anycast address.
    pub http: Result<String, String>,
}

pub fn judge(o: &Observed) -> Vec<Point> {
    let mut pts = Vec::new();
    let others: Vec<u8> = o.lbs.iter().copied().filter(|&n| n != DRAINED).collect();
    let names = |v: &[u8]| {
        v.iter()
            .map(|n| format!("lb{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    pts.push(match &o.hops {
        None => point(
            false,
            "there is no router: start the lab with `halo lab up --bgp --lbs 3`".into(),
        ),
        Some(h) if *h == others => point(
            true,
            format!(
                "the router sends {ANYCAST} to {} only (lb{DRAINED} drained)",
                names(h)
            ),
        ),
        Some(h) if h.contains(&DRAINED) => point(
            false,
            format!(
                "the router still sends {ANYCAST} to lb{DRAINED} (next hops: {})",
                names(h)
            ),
        ),
        Some(h) => point(
            false,
            format!(
                "the router sends {ANYCAST} to {}: want {}",
                if h.is_empty() {
                    "nobody".to_string()
                } else {
                    names(h)
                },
                names(&others)
            ),
        ),
    });
    for (n, a) in &o.anycast {
        let p = match (a, *n == DRAINED) {
            (None, true) => point(
                false,
                format!("lb{n}'s halo does not answer: a drain keeps it running (`halo lab start lb{n}`)"),
            ),
            (None, false) => point(false, format!("lb{n}'s halo does not answer")),
            (Some(None), _) => point(false, format!("lb{n}'s halo has no [anycast] section")),
            (Some(Some(a)), true) if a.by_hand && a.state != "announced" => point(
                true,
                format!("lb{n} has withdrawn {ANYCAST} by hand ({}) and its halo runs on", a.state),
            ),
            (Some(Some(a)), true) if a.state != "announced" => point(
                false,
                format!(
                    "lb{n} does not announce {ANYCAST}, but not by hand ({}): its proxy is unhealthy; use `halo anycast withdraw web`",
                    a.state
                ),
            ),
            (Some(Some(_)), true) => point(
                false,
                format!("lb{n} still announces {ANYCAST}: `halo anycast withdraw web --socket DIR/lb{n}/halo.sock`"),
            ),
            (Some(Some(a)), false) if a.state == "announced" => {
                point(true, format!("lb{n} announces {ANYCAST}"))
            }
            (Some(Some(a)), false) => point(
                false,
                format!("lb{n} does not announce {ANYCAST} ({}): only lb{DRAINED} is drained", a.state),
            ),
        };
        pts.push(p);
    }
    pts.push(match &o.http {
        Ok(server) => point(true, format!("http://{ANYCAST}/ answers (from {server})")),
        Err(e) => point(false, format!("http://{ANYCAST}/ does not answer: {e}")),
    });
    pts
}

pub(in crate::lab) fn observe(lab: &Running) -> Result<Observed> {
    let hops = lab.router.then(|| router_lbs(lab));
    let anycast = lab
        .lbs
        .iter()
        .map(|&n| {
            let a = snapshot(lab, n).map(|s| {
                s.anycast.into_iter().next().map(|a| Anycast {
                    state: a.state,
                    by_hand: a.withdrawn_by_hand,
                })
            });
            (n, a)
        })
        .collect();
    let http = lab.in_client(|| {
        match probe::get(SocketAddr::from((ANYCAST, 80)), "/", Duration::from_secs(1)) {
            Ok(rep) if rep.status == 200 => Ok(rep.server.unwrap_or_else(|| "?".to_string())),
            Ok(rep) => Err(format!("status {}", rep.status)),
            Err(e) => Err(e.to_string()),
        }
    })?;
    Ok(Observed {
        lbs: lab.lbs.clone(),
        hops,
        anycast,
        http,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(state: &str, by_hand: bool) -> Option<Option<Anycast>> {
        Some(Some(Anycast {
            state: state.into(),
            by_hand,
        }))
    }

    fn solved() -> Observed {
        Observed {
            lbs: vec![1, 2, 3],
            hops: Some(vec![1, 3]),
            anycast: vec![
                (1, a("announced", false)),
                (2, a("draining", true)),
                (3, a("announced", false)),
            ],
            http: Ok("web1".into()),
        }
    }

    fn failed(o: &Observed) -> Vec<String> {
        judge(o)
            .into_iter()
            .filter(|p| !p.ok)
            .map(|p| p.text)
            .collect()
    }

    #[test]
    fn the_drained_lab_passes_every_point() {
        let pts = judge(&solved());
        assert_eq!(pts.len(), 1 + 3 + 1);
        assert!(pts.iter().all(|p| p.ok), "{pts:?}");
        // Once the drain time is over it is "withdrawn": still solved.
        let mut o = solved();
        o.anycast[1].1 = a("withdrawn", true);
        assert!(failed(&o).is_empty());
    }

    #[test]
    fn a_fresh_lab_is_not_drained() {
        let mut o = solved();
        o.hops = Some(vec![1, 2, 3]);
        o.anycast[1].1 = a("announced", false);
        assert_eq!(
            failed(&o),
            [
                "the router still sends 203.0.113.10 to lb2 (next hops: lb1, lb2, lb3)",
                "lb2 still announces 203.0.113.10: `halo anycast withdraw web --socket DIR/lb2/halo.sock`",
            ]
        );
    }

    #[test]
    fn killing_or_unhealthy_is_not_a_drain() {
        let mut o = solved();
        o.anycast[1].1 = None;
        assert_eq!(
            failed(&o),
            ["lb2's halo does not answer: a drain keeps it running (`halo lab start lb2`)"]
        );
        o.anycast[1].1 = a("draining", false);
        assert!(failed(&o)[0].contains("not by hand"), "{:?}", failed(&o));
        // Another LB drained too, a lab without a router, no page.
        let mut o = solved();
        o.anycast[2].1 = a("withdrawn", true);
        o.hops = Some(vec![1]);
        o.http = Err("connect: timed out".into());
        let f = failed(&o);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(f[0], "the router sends 203.0.113.10 to lb1: want lb1, lb3");
        let o = Observed {
            hops: None,
            ..solved()
        };
        assert!(failed(&o)[0].starts_with("there is no router"));
    }
}
