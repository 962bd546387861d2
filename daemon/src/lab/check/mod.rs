//! `halo lab check N`: inspect the running lab and say, point by point,
//! whether exercise N's goal (docs/labs/) is reached; exit 0 when every point
//! is, 1 otherwise. Like netlab's `validate`.
//!
//! The judging is pure ([`judge`] over an [`Observed`]), so it is unit-tested
//! on made-up states; [`observe`] is the only part that looks at the lab (the
//! kernel's addresses, each halo's control socket, requests from the client).

pub mod bgp;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::plan;
use super::probe;
use super::running::{snapshot, Running};

mod basic;

/// Exercises that have a check, with their title.
pub const CHECKS: &[(u8, &str)] = &[(10, "active-active: three LBs, three VIPs")];

/// One VRRP instance as an LB's halo reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub state: String,
    pub vips: Vec<String>,
}

/// What a check looked at.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The LBs of the lab.
    pub lbs: Vec<u8>,
    /// For each VIP the exercise uses: the LBs holding it (the kernel's view).
    pub holders: Vec<(Ipv4Addr, Vec<u8>)>,
    /// Per LB: its halo's VRRP instances, `None` if it does not answer.
    pub instances: Vec<(u8, Option<Vec<Instance>>)>,
    /// Per VIP: `GET /` from the client, the backend that answered or why not.
    pub http: Vec<(Ipv4Addr, Result<String, String>)>,
}

/// One point of a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub ok: bool,
    pub text: String,
}

fn point(ok: bool, text: String) -> Point {
    Point { ok, text }
}

/// The VIPs exercise `n` looks at.
pub fn vips_of(n: u8) -> Vec<Ipv4Addr> {
    match n {
        10 => (1..=3).map(plan::vip).collect(),
        _ => Vec::new(),
    }
}

/// Exercise `n`'s points over what was observed; `None` if it has no check.
pub fn judge(n: u8, o: &Observed) -> Option<Vec<Point>> {
    match n {
        10 => Some(active_active(o)),
        _ => None,
    }
}

/// Exercise 10: every VIP on exactly one LB, each LB master of a different
/// VIP, every other LB its backup (so a failure moves it), and every VIP
/// serving pages.
fn active_active(o: &Observed) -> Vec<Point> {
    let mut pts = Vec::new();
    let lb = |n: &u8| format!("lb{n}");
    for (vip, h) in &o.holders {
        let text = match h.len() {
            0 => format!("{vip} is held by nobody (no instance of this VIP is MASTER)"),
            1 => format!("{vip} is held by lb{} only", h[0]),
            _ => format!(
                "{vip} is held by {} at once (split brain: same vrid? do they hear each other?)",
                h.iter().map(lb).collect::<Vec<_>>().join(" + ")
            ),
        };
        pts.push(point(h.len() == 1, text));
    }
    // Each LB master of at most one VIP, and every LB of one.
    for &n in &o.lbs {
        let mine: Vec<String> = o
            .holders
            .iter()
            .filter(|(_, h)| h.contains(&n))
            .map(|(v, _)| v.to_string())
            .collect();
        let text = match mine.len() {
            0 => format!("lb{n} is master of no VIP: it does no work"),
            1 => format!("lb{n} is master of {} (one VIP each)", mine[0]),
            _ => format!(
                "lb{n} is master of {}: one VIP each, the others' priorities must win theirs",
                mine.join(", ")
            ),
        };
        pts.push(point(mine.len() == 1, text));
    }
    // Backups: every LB runs an instance for every VIP it does not hold.
    for (n, inst) in &o.instances {
        let Some(inst) = inst else {
            pts.push(point(
                false,
                format!("lb{n}'s halo does not answer on its control socket"),
            ));
            continue;
        };
        let mut missing = Vec::new();
        for (vip, h) in &o.holders {
            if h.contains(n) {
                continue;
            }
            let v = vip.to_string();
            let backs = inst.iter().any(|i| {
                i.state == "BACKUP" && i.vips.iter().any(|x| x.split('/').next() == Some(&v))
            });
            if !backs {
                missing.push(v);
            }
        }
        let text = if missing.is_empty() {
            format!("lb{n} is BACKUP of every VIP it does not hold")
        } else {
            format!(
                "lb{n} is not BACKUP of {}: add an instance for it, with a lower priority",
                missing.join(", ")
            )
        };
        pts.push(point(missing.is_empty(), text));
    }
    for (vip, r) in &o.http {
        pts.push(match r {
            Ok(server) => point(true, format!("http://{vip}/ answers (from {server})")),
            Err(e) => point(false, format!("http://{vip}/ does not answer: {e}")),
        });
    }
    pts
}

/// Look at the lab for exercise `n`.
fn observe(lab: &Running, n: u8) -> Result<Observed> {
    let vips = vips_of(n);
    let holders = vips.iter().map(|&v| (v, lab.holders_of(v))).collect();
    let instances = lab
        .lbs
        .iter()
        .map(|&l| {
            let inst = snapshot(lab, l).map(|s| {
                s.vrrp
                    .into_iter()
                    .map(|v| Instance {
                        name: v.name,
                        state: v.state.to_string(),
                        vips: v.vips,
                    })
                    .collect()
            });
            (l, inst)
        })
        .collect();
    let targets = vips.clone();
    let http = lab.in_client(move || {
        targets
            .iter()
            .map(|&v| {
                let r = probe::get(SocketAddr::from((v, 80)), "/", Duration::from_secs(1));
                let r = match r {
                    Ok(rep) if rep.status == 200 => {
                        Ok(rep.server.unwrap_or_else(|| "?".to_string()))
                    }
                    Ok(rep) => Err(format!("status {}", rep.status)),
                    Err(e) => Err(e.to_string()),
                };
                (v, r)
            })
            .collect()
    })?;
    Ok(Observed {
        lbs: lab.lbs.clone(),
        holders,
        instances,
        http,
    })
}

/// `halo lab check N`.
pub(super) fn check(n: u8, lab: &Running) -> Result<ExitCode> {
    if n == bgp::EXERCISE {
        return Ok(report(n, bgp::TITLE, &bgp::judge(&bgp::observe(lab)?)));
    }
    // Exercises 1-9 (basic.rs) first, then the ones in this file.
    let all = || basic::CHECKS.iter().chain(CHECKS);
    let Some(&(_, title)) = all().find(|(k, _)| *k == n) else {
        let mut have: Vec<String> = all().map(|(k, _)| k.to_string()).collect();
        have.push(bgp::EXERCISE.to_string());
        bail!(
            "exercise {n} has no check yet; checks exist for: {}",
            have.join(", ")
        );
    };
    let pts = if basic::CHECKS.iter().any(|(k, _)| *k == n) {
        basic::judge(n, &basic::observe(lab)?).unwrap_or_default()
    } else {
        judge(n, &observe(lab, n)?).unwrap_or_default()
    };
    Ok(report(n, title, &pts))
}

/// Print the points; exit 0 when all are reached.
fn report(n: u8, title: &str, pts: &[Point]) -> ExitCode {
    println!("exercise {n} ({title}):");
    for p in pts {
        println!("  {}  {}", if p.ok { "ok  " } else { "FAIL" }, p.text);
    }
    let failed = pts.iter().filter(|p| !p.ok).count();
    if failed == 0 {
        println!("goal reached: all {} points", pts.len());
        ExitCode::SUCCESS
    } else {
        println!("not yet: {failed} of {} points to go", pts.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, state: &str, vip: Ipv4Addr) -> Instance {
        Instance {
            name: name.into(),
            state: state.into(),
            vips: vec![format!("{vip}/24")],
        }
    }

    /// Three LBs, VIP i on lb i, every other LB its backup.
    fn solved() -> Observed {
        let vips = vips_of(10);
        Observed {
            lbs: vec![1, 2, 3],
            holders: vips
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, vec![i as u8 + 1]))
                .collect(),
            instances: (1..=3u8)
                .map(|l| {
                    let all = vips
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let st = if i as u8 + 1 == l { "MASTER" } else { "BACKUP" };
                            inst(&format!("VI_{}", i + 1), st, v)
                        })
                        .collect();
                    (l, Some(all))
                })
                .collect(),
            http: vips.iter().map(|&v| (v, Ok("web1".into()))).collect(),
        }
    }

    fn failed(o: &Observed) -> Vec<String> {
        judge(10, o)
            .unwrap()
            .into_iter()
            .filter(|p| !p.ok)
            .map(|p| p.text)
            .collect()
    }

    #[test]
    fn the_solved_lab_passes_every_point() {
        let pts = judge(10, &solved()).unwrap();
        assert_eq!(pts.len(), 3 + 3 + 3 + 3);
        assert!(pts.iter().all(|p| p.ok), "{pts:?}");
    }

    #[test]
    fn a_one_vip_lab_fails_with_reasons() {
        // `halo lab up --lbs 3`: only VIP 1, on lb1; lb2 and lb3 back it up.
        let mut o = solved();
        let vips = vips_of(10);
        o.holders = vec![(vips[0], vec![1]), (vips[1], vec![]), (vips[2], vec![])];
        o.instances = (1..=3u8)
            .map(|l| {
                let st = if l == 1 { "MASTER" } else { "BACKUP" };
                (l, Some(vec![inst("VI_1", st, vips[0])]))
            })
            .collect();
        o.http[1].1 = Err("connect: no route to host".into());
        o.http[2].1 = Err("connect: no route to host".into());
        let f = failed(&o);
        assert!(
            f.contains(
                &"192.0.2.101 is held by nobody (no instance of this VIP is MASTER)".to_string()
            ),
            "{f:?}"
        );
        assert!(
            f.iter().any(|t| t.starts_with("lb2 is master of no VIP")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|t| t.starts_with("lb1 is not BACKUP of 192.0.2.101, 192.0.2.102")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|t| t.starts_with("http://192.0.2.102/ does not answer")),
            "{f:?}"
        );
    }

    #[test]
    fn one_lb_holding_two_vips_or_a_split_brain_fails() {
        let mut o = solved();
        let vips = vips_of(10);
        o.holders[1] = (vips[1], vec![1]);
        o.holders[2] = (vips[2], vec![2, 3]);
        let f = failed(&o);
        assert!(
            f.iter()
                .any(|t| t.starts_with("lb1 is master of 192.0.2.100, 192.0.2.101")),
            "{f:?}"
        );
        assert!(
            f.iter().any(|t| t.contains("held by lb2 + lb3 at once")),
            "{f:?}"
        );
        let mut o = solved();
        o.instances[2].1 = None;
        assert_eq!(
            failed(&o),
            ["lb3's halo does not answer on its control socket"]
        );
    }

    #[test]
    fn only_exercises_with_a_check_are_judged() {
        assert!(judge(1, &Observed::default()).is_none());
        for (n, _) in CHECKS {
            assert!(judge(*n, &Observed::default()).is_some());
            assert!(!vips_of(*n).is_empty());
        }
    }
}
