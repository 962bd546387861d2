//! Liveness for the systemd watchdog: is every part of halo still going
//! round its loop?
//!
//! Each part that must not get stuck (the VRRP loop of each instance, each
//! proxy worker, the health checker, the main runtime) registers a [`Beat`]
//! and bumps it every time it goes round; a part that waits for nothing
//! bumps it from a heartbeat task on its own runtime ([`with_heartbeat`]),
//! so a thread that is blocked or spinning without yielding stops bumping.
//! The pinger ([`Pinger::decide`], pure: counts in, decision out) sends
//! `WATCHDOG=1` only when every registered part has moved since the last
//! ping: one stuck part stops the pings and systemd restarts halo after
//! `WatchdogSec=`.
//!
//! This module does not talk to systemd (`sdnotify` does) and does not read
//! the clock in its decision; the pinger thread in `sdnotify` drives it.
//! Nothing registers unless the watchdog is on ([`enable`]): without
//! systemd's watchdog a [`Beat`] is inert and costs one branch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Every part currently registered, and how often heartbeats bump.
pub struct Registry {
    parts: Mutex<Vec<Part>>,
    next_id: AtomicU64,
    /// The period of [`with_heartbeat`]'s bumps: well under the pinger's.
    beat_every: Duration,
}

struct Part {
    id: u64,
    name: String,
    count: Arc<AtomicU64>,
}

/// One registered part's counter; dropping it deregisters the part (an
/// instance removed by a reload, a proxy generation that has drained).
pub struct Beat {
    reg: Option<(&'static Registry, u64, Arc<AtomicU64>)>,
}

/// What one part has done so far, as the pinger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub id: u64,
    pub name: String,
    pub count: u64,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Turn liveness tracking on for this process (once, before the parts
/// start): heartbeats bump every `beat_every`.
pub fn enable(beat_every: Duration) -> &'static Registry {
    REGISTRY.get_or_init(|| Registry {
        parts: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
        beat_every,
    })
}

/// Register a part under `name` (for the log when it gets stuck). Inert
/// when the watchdog is off.
pub fn register(name: impl Into<String>) -> Beat {
    match REGISTRY.get() {
        Some(r) => r.register(name.into()),
        None => Beat { reg: None },
    }
}

/// Run `fut` with a heartbeat beside it in the same task: the part named
/// `name` counts as alive while the thread running this future keeps
/// polling it. `fut` may wait as long as it likes for I/O; a blocking call
/// or a busy loop on this thread stops the heartbeat.
pub async fn with_heartbeat<F: Future>(name: impl Into<String>, fut: F) -> F::Output {
    let Some(reg) = REGISTRY.get() else {
        return fut.await;
    };
    let beat = reg.register(name.into());
    let every = reg.beat_every;
    let heartbeat = async {
        loop {
            beat.bump();
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        r = fut => r,
        _ = heartbeat => unreachable!("a heartbeat never ends"),
    }
}

impl Registry {
    fn register(&'static self, name: String) -> Beat {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let count = Arc::new(AtomicU64::new(0));
        self.lock().push(Part {
            id,
            name,
            count: count.clone(),
        });
        Beat {
            reg: Some((self, id, count)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Part>> {
        // A panic while holding this lock leaves plain data behind.
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every registered part and its count now.
    pub fn sample(&self) -> Vec<Sample> {
        self.lock()
            .iter()
            .map(|p| Sample {
                id: p.id,
                name: p.name.clone(),
                count: p.count.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Beat {
    /// This part went round once more.
    pub fn bump(&self) {
        if let Some((_, _, c)) = &self.reg {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether anyone looks at the bumps (the watchdog is on).
    pub fn is_active(&self) -> bool {
        self.reg.is_some()
    }

    /// How often a part should go round at least, when the watchdog is on.
    pub fn period(&self) -> Option<Duration> {
        self.reg.as_ref().map(|(r, _, _)| r.beat_every)
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        if let Some((r, id, _)) = self.reg.take() {
            r.lock().retain(|p| p.id != id);
        }
    }
}

// === the pinger's decision ===

/// What the pinger does this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every part moved since the last ping: send `WATCHDOG=1`.
    Ping,
    /// These parts have not moved since the last ping: no ping.
    Hold { stuck: Vec<String> },
}

/// Decides, from successive samples, whether to ping. Pure: no clock, no
/// I/O.
#[derive(Debug, Default)]
pub struct Pinger {
    /// Each part's count at the last ping.
    at_last_ping: HashMap<u64, u64>,
}

impl Pinger {
    pub fn new() -> Pinger {
        Pinger::default()
    }

    /// Ping when every part in `now` has moved since the last ping. A part
    /// that registered since then counts as moved (it has just started);
    /// a part that is gone no longer counts. Progress is measured from the
    /// last *ping*, not the last call: a part that stops for good keeps the
    /// pings stopped, however often this is asked.
    #[must_use]
    pub fn decide(&mut self, now: &[Sample]) -> Decision {
        let stuck: Vec<String> = now
            .iter()
            .filter(|s| self.at_last_ping.get(&s.id) == Some(&s.count))
            .map(|s| s.name.clone())
            .collect();
        if !stuck.is_empty() {
            return Decision::Hold { stuck };
        }
        self.at_last_ping = now.iter().map(|s| (s.id, s.count)).collect();
        Decision::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: u64, count: u64) -> Sample {
        Sample {
            id,
            name: format!("part {id}"),
            count,
        }
    }

    #[test]
    fn pings_while_every_part_moves() {
        let mut p = Pinger::new();
        assert_eq!(p.decide(&[s(0, 0), s(1, 0)]), Decision::Ping);
        assert_eq!(p.decide(&[s(0, 1), s(1, 5)]), Decision::Ping);
        assert_eq!(p.decide(&[s(0, 2), s(1, 6)]), Decision::Ping);
    }

    #[test]
    fn one_stuck_part_stops_the_pings_until_it_moves() {
        let mut p = Pinger::new();
        assert_eq!(p.decide(&[s(0, 1), s(1, 1)]), Decision::Ping);
        let hold = Decision::Hold {
            stuck: vec!["part 1".into()],
        };
        assert_eq!(p.decide(&[s(0, 2), s(1, 1)]), hold);
        // Part 0 moving on does not make up for part 1.
        assert_eq!(p.decide(&[s(0, 9), s(1, 1)]), hold);
        assert_eq!(p.decide(&[s(0, 10), s(1, 2)]), Decision::Ping);
    }

    #[test]
    fn progress_counts_from_the_last_ping_not_the_last_look() {
        let mut p = Pinger::new();
        assert_eq!(p.decide(&[s(0, 1), s(1, 1)]), Decision::Ping);
        // Part 1 stuck: held, and part 0's count at the last ping is kept.
        assert!(matches!(
            p.decide(&[s(0, 1), s(1, 1)]),
            Decision::Hold { .. }
        ));
        // Part 0 has not moved since the ping either (1 -> 1), whatever
        // happened between the two looks.
        assert_eq!(
            p.decide(&[s(0, 1), s(1, 2)]),
            Decision::Hold {
                stuck: vec!["part 0".into()]
            }
        );
    }

    #[test]
    fn new_parts_count_as_moved_and_gone_parts_do_not_count() {
        let mut p = Pinger::new();
        assert_eq!(p.decide(&[s(0, 1), s(1, 1)]), Decision::Ping);
        // Part 1 gone (a reload stopped it), part 2 new at count 0.
        assert_eq!(p.decide(&[s(0, 2), s(2, 0)]), Decision::Ping);
        // From now on part 2 must move like the others.
        assert_eq!(
            p.decide(&[s(0, 3), s(2, 0)]),
            Decision::Hold {
                stuck: vec!["part 2".into()]
            }
        );
    }

    #[test]
    fn nothing_registered_pings() {
        assert_eq!(Pinger::new().decide(&[]), Decision::Ping);
    }

    #[test]
    fn a_dropped_beat_leaves_the_registry() {
        let reg = enable(Duration::from_millis(10));
        let a = register("test a");
        let b = register("test b");
        a.bump();
        a.bump();
        assert!(a.is_active());
        let mine = |r: &Registry| {
            r.sample()
                .into_iter()
                .filter(|s| s.name.starts_with("test "))
                .map(|s| (s.name, s.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            mine(reg),
            vec![("test a".to_string(), 2), ("test b".to_string(), 0)]
        );
        drop(b);
        assert_eq!(mine(reg), vec![("test a".to_string(), 2)]);
    }

    #[test]
    fn a_heartbeat_stops_when_its_thread_blocks() {
        let reg = enable(Duration::from_millis(10));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let count = |reg: &Registry| {
            reg.sample()
                .into_iter()
                .find(|s| s.name == "test heartbeat")
                .map(|s| s.count)
        };
        rt.block_on(with_heartbeat("test heartbeat", async {
            // Waiting (the future is pending) lets the heartbeat run.
            let before = count(reg).unwrap();
            while count(reg).unwrap() < before + 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Blocking the thread does not.
            let before = count(reg).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(count(reg).unwrap(), before);
        }));
        assert_eq!(count(reg), None, "deregistered when the future ends");
    }
}
