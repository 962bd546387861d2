//! `halo lab watch`: a live view of the lab for a bounded time. Who holds
//! the VIP (polled every 200 ms from the kernel, with a timestamped event on
//! each change), and a probe loop in the client namespace sending a fixed
//! rate of `GET /` to the VIP, counting answers per backend and failures,
//! and reporting each outage the client saw with its length.
//!
//! The bookkeeping ([`Tally`]) is pure and unit-tested; the loop around it
//! only reads the clock and redraws. On a terminal the view is redrawn in
//! place; otherwise (a pipe, a test) only events and a final summary print.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::plan::{Node, VIP};
use super::probe::{self, ProbeError, Reply};
use super::running::Running;
use super::sys;
use super::Which;

const REDRAW: Duration = Duration::from_millis(200);
const WINDOW: Duration = Duration::from_secs(5);

/// One probe's outcome: the backend that answered, or why it failed.
pub type Outcome = Result<String, String>;

/// Counts and events, fed with observations and their times.
#[derive(Debug)]
pub struct Tally {
    start: Instant,
    pub total: BTreeMap<String, u64>,
    pub failed: u64,
    recent: VecDeque<(Instant, Option<String>)>,
    /// First failure of the outage in progress, and how many so far.
    outage: Option<(Instant, u64)>,
    pub events: Vec<(Duration, String)>,
    master: Option<Vec<u8>>,
    /// Longest client-visible outage, for the summary.
    pub worst_gap: Option<Duration>,
}

impl Tally {
    pub fn new(start: Instant) -> Tally {
        Tally {
            start,
            total: BTreeMap::new(),
            failed: 0,
            recent: VecDeque::new(),
            outage: None,
            events: Vec::new(),
            master: None,
            worst_gap: None,
        }
    }

    /// Events are kept in time order: a probe's result arrives up to its
    /// timeout after it was sent, later than a VIP move it preceded.
    fn event(&mut self, at: Instant, what: String) {
        let t = at.saturating_duration_since(self.start);
        let i = self.events.partition_point(|(u, _)| *u <= t);
        self.events.insert(i, (t, what));
    }

    /// The LBs holding the VIP at `now`; records an event when it changes.
    pub fn holders(&mut self, now: Instant, holders: Vec<u8>) {
        if self.master.as_ref() == Some(&holders) {
            return;
        }
        let name = |h: &[u8]| match h {
            [] => "nobody".to_string(),
            [one] => format!("lb{one}"),
            many => format!(
                "{} (SPLIT BRAIN)",
                many.iter()
                    .map(|n| format!("lb{n}"))
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        };
        let what = match &self.master {
            None => format!("VIP held by {}", name(&holders)),
            Some(old) => format!("VIP moved: {} -> {}", name(old), name(&holders)),
        };
        self.event(now, what);
        self.master = Some(holders);
    }

    /// One probe sent at `at`.
    pub fn probe(&mut self, at: Instant, outcome: Outcome) {
        match outcome {
            Ok(server) => {
                if let Some((first, n)) = self.outage.take() {
                    let gap = at.saturating_duration_since(first);
                    self.worst_gap = self.worst_gap.max(Some(gap));
                    self.event(
                        at,
                        format!(
                            "client: service back after {n} failed requests ({} ms)",
                            gap.as_millis()
                        ),
                    );
                }
                *self.total.entry(server.clone()).or_default() += 1;
                self.recent.push_back((at, Some(server)));
            }
            Err(why) => {
                self.failed += 1;
                match &mut self.outage {
                    Some((_, n)) => *n += 1,
                    None => {
                        self.outage = Some((at, 1));
                        self.event(at, format!("client: request failed ({why})"));
                    }
                }
                self.recent.push_back((at, None));
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) > WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Per backend over the last few seconds; `None` counts failures.
    pub fn recent(&self) -> BTreeMap<Option<String>, u64> {
        let mut m = BTreeMap::new();
        for (_, s) in &self.recent {
            *m.entry(s.clone()).or_default() += 1;
        }
        m
    }

    pub fn master(&self) -> Option<&[u8]> {
        self.master.as_deref()
    }
}

fn classify(r: Result<Reply, ProbeError>) -> Outcome {
    match r {
        Ok(Reply {
            status: 200,
            server: Some(s),
        }) => Ok(s),
        Ok(rep) => Err(format!("HTTP {}", rep.status)),
        Err(e) => Err(e.to_string()),
    }
}

/// Set `flag` on Ctrl-C (SIGINT) instead of dying, so the summary prints.
fn on_ctrl_c(flag: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Register before returning, so a Ctrl-C right away is not lost.
    let mut sigint = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    })?;
    thread::spawn(move || {
        rt.block_on(sigint.recv());
        flag.store(true, Ordering::SeqCst);
    });
    Ok(())
}

pub fn watch(which: &Which, seconds: Duration, rate: u32, timeout: Duration) -> Result<()> {
    let lab = Running::find(which)?;
    let stop = Arc::new(AtomicBool::new(false));
    on_ctrl_c(stop.clone())?;
    let start = Instant::now();
    let end = start + seconds;
    let period = Duration::from_secs(1) / rate.max(1);
    let (tx, rx) = mpsc::channel::<(Instant, Outcome)>();
    let probe_stop = stop.clone();
    let client = lab.ns(Node::Client);
    let prober = thread::spawn(move || {
        sys::in_netns(&client, move || {
            let vip = std::net::SocketAddr::from((VIP, 80));
            let mut next = Instant::now();
            while !probe_stop.load(Ordering::SeqCst) && Instant::now() < end {
                let at = Instant::now();
                let outcome = classify(probe::get(vip, "/", timeout));
                if tx.send((at, outcome)).is_err() {
                    break;
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    // Fell behind (a timeout): do not burst to catch up.
                    next = now;
                }
            }
        })
    });

    let tty = std::io::stdout().is_terminal();
    let mut tally = Tally::new(start);
    let mut printed = 0;
    if !tty {
        println!(
            "watching for {} s: {rate} requests/s from the client to http://{VIP}/",
            seconds.as_secs()
        );
    }
    loop {
        // Probes first: they were sent before `now`, so events stay in time order.
        while let Ok((at, outcome)) = rx.try_recv() {
            tally.probe(at, outcome);
        }
        let now = Instant::now();
        tally.holders(now, lab.holders());
        if tty {
            draw(&lab, &tally, now.duration_since(start), seconds, rate);
        } else {
            // Print only events older than any result still in flight, so
            // lines come out in time order.
            let settled = now.duration_since(start).saturating_sub(timeout + REDRAW);
            for (t, e) in tally.events[printed..]
                .iter()
                .take_while(|(t, _)| *t <= settled)
            {
                println!("t+{:>7.3}s  {e}", t.as_secs_f64());
                printed += 1;
            }
        }
        if stop.load(Ordering::SeqCst) || now >= end {
            break;
        }
        thread::sleep(REDRAW);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = prober.join();
    while let Ok((at, outcome)) = rx.try_recv() {
        tally.probe(at, outcome);
    }
    if !tty {
        for (t, e) in &tally.events[printed..] {
            println!("t+{:>7.3}s  {e}", t.as_secs_f64());
        }
    }
    summary(&tally, start.elapsed());
    Ok(())
}

fn lb_list(h: &[u8]) -> String {
    if h.is_empty() {
        return "nobody".into();
    }
    h.iter()
        .map(|n| format!("lb{n}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn draw(lab: &Running, t: &Tally, elapsed: Duration, total: Duration, rate: u32) {
    let mut s = String::from("\x1b[H\x1b[2J");
    s.push_str(&format!(
        "halo lab watch  {:.1} / {} s   {rate} req/s from the client to http://{VIP}/   Ctrl-C stops\n\n",
        elapsed.as_secs_f64(),
        total.as_secs()
    ));
    let master = t.master().map(lb_list).unwrap_or_default();
    let split = if t.master().is_some_and(|m| m.len() > 1) {
        "   <-- SPLIT BRAIN"
    } else {
        ""
    };
    s.push_str(&format!(
        "  VIP {VIP} held by: {master}{split}   (LBs: {})\n\n",
        lb_list(&lab.lbs)
    ));
    let recent = t.recent();
    let window: u64 = recent.values().sum();
    s.push_str(&format!(
        "  {:<10} {:>8} {:>8}\n",
        "backend", "last 5s", "total"
    ));
    let mut names: Vec<String> = lab.webs.iter().map(|w| format!("web{w}")).collect();
    for k in t.total.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    for name in names {
        let r = recent.get(&Some(name.clone())).copied().unwrap_or(0);
        let bar = (r * 30).checked_div(window).unwrap_or(0) as usize;
        s.push_str(&format!(
            "  {name:<10} {r:>8} {:>8}  {}\n",
            t.total.get(&name).copied().unwrap_or(0),
            "#".repeat(bar)
        ));
    }
    let rf = recent.get(&None).copied().unwrap_or(0);
    s.push_str(&format!(
        "  {:<10} {rf:>8} {:>8}  {}\n\n",
        "FAILED",
        t.failed,
        "!".repeat(rf.min(30) as usize)
    ));
    s.push_str("  events:\n");
    let from = t.events.len().saturating_sub(12);
    for (at, e) in &t.events[from..] {
        s.push_str(&format!("  t+{:>7.3}s  {e}\n", at.as_secs_f64()));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

fn summary(t: &Tally, elapsed: Duration) {
    let ok: u64 = t.total.values().sum();
    let per: Vec<String> = t.total.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!();
    println!(
        "{} requests in {:.1} s: {} ok ({}), {} failed; longest outage seen by the client: {}",
        ok + t.failed,
        elapsed.as_secs_f64(),
        ok,
        per.join(", "),
        t.failed,
        match t.worst_gap {
            Some(g) => format!("{} ms", g.as_millis()),
            None if t.failed > 0 => "still failing at the end".to_string(),
            None => "none".to_string(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_in_time_order_when_a_result_arrives_late() {
        let t0 = Instant::now();
        let mut t = Tally::new(t0);
        t.holders(t0, vec![1]);
        t.holders(t0 + Duration::from_millis(1070), vec![]);
        t.probe(t0 + Duration::from_millis(1000), Err("no answer".into()));
        let ev: Vec<&str> = t.events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            ev,
            [
                "VIP held by lb1",
                "client: request failed (no answer)",
                "VIP moved: lb1 -> nobody"
            ]
        );
    }

    #[test]
    fn master_changes_become_events_once() {
        let t0 = Instant::now();
        let mut t = Tally::new(t0);
        t.holders(t0, vec![1]);
        t.holders(t0 + Duration::from_millis(200), vec![1]);
        t.holders(t0 + Duration::from_secs(3), vec![]);
        t.holders(t0 + Duration::from_millis(3400), vec![2]);
        t.holders(t0 + Duration::from_secs(9), vec![1, 2]);
        let ev: Vec<&str> = t.events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            ev,
            [
                "VIP held by lb1",
                "VIP moved: lb1 -> nobody",
                "VIP moved: nobody -> lb2",
                "VIP moved: lb2 -> lb1 + lb2 (SPLIT BRAIN)"
            ]
        );
        assert_eq!(t.events[1].0, Duration::from_secs(3));
    }

    #[test]
    fn an_outage_is_reported_with_its_length_and_count() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Tally::new(t0);
        t.probe(ms(0), Ok("web1".into()));
        t.probe(ms(50), Err("connect: refused".into()));
        t.probe(ms(100), Err("connect: refused".into()));
        t.probe(ms(150), Err("HTTP 503".into()));
        t.probe(ms(850), Ok("web2".into()));
        assert_eq!(t.failed, 3);
        assert_eq!(t.worst_gap, Some(Duration::from_millis(800)));
        assert_eq!(t.total.values().sum::<u64>(), 2);
        let ev: Vec<&str> = t.events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            ev,
            [
                "client: request failed (connect: refused)",
                "client: service back after 3 failed requests (800 ms)"
            ]
        );
    }

    #[test]
    fn the_recent_window_forgets_old_probes() {
        let t0 = Instant::now();
        let mut t = Tally::new(t0);
        t.probe(t0, Ok("web1".into()));
        t.probe(t0 + Duration::from_secs(10), Ok("web2".into()));
        let r = t.recent();
        assert_eq!(r.get(&Some("web1".to_string())), None);
        assert_eq!(r.get(&Some("web2".to_string())), Some(&1));
        assert_eq!(t.total.len(), 2);
    }
}
