//! The rise/fall state machine of one server's health, pure and sans-IO.
//!
//! A [`Checker`] is fed check results (`observe`) and passive observations
//! from real traffic (`observe_passive`), each with the time it happened,
//! and answers with an optional [`Transition`] (UP or DOWN, with the reason
//! to log). It also says when the next active probe is due
//! ([`Checker::next_probe`]). It reads no clock and does no I/O: the probe
//! driver in `health::mod` owns both.
//!
//! Counting follows pingora's `Health::observe_health`: a result that agrees
//! with the current state clears the streak; `fall` consecutive failures
//! while UP flip it DOWN, `rise` consecutive successes while DOWN flip it UP.
//!
//! Startup follows HAProxy's `init-state up` / `init-state down`: the initial
//! state (`initial_up`) is provisional, so the first result that contradicts
//! it flips the server at once, and the first that agrees confirms it. This
//! way a dead server configured to start UP stops receiving traffic after
//! one check instead of `fall`, and a healthy server configured to start
//! DOWN gets traffic after one check instead of `rise`.
//!
//! Probes are spaced by `interval` when the server is settled and by
//! `fast_interval` while it is between states (a streak is running, or the
//! initial state is not yet confirmed), each spacing moved by a deterministic
//! jitter of up to ±1/16 so that checks of many servers do not align.

use std::time::{Duration, Instant};

/// The outcome of one active probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    /// What happened, for logs and `halo status`: `200 OK`,
    /// `connection refused`, `timeout after 2s`, ...
    pub detail: String,
}

impl CheckResult {
    pub fn success(detail: impl Into<String>) -> CheckResult {
        CheckResult {
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn failure(detail: impl Into<String>) -> CheckResult {
        CheckResult {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What the proxy saw on real traffic to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveEvent {
    /// Connecting to the server failed (refused, unreachable, timed out).
    ConnectFailed,
    /// The server answered with a 5xx status.
    Status5xx,
    /// A request completed normally. Never raises health by itself: only
    /// active checks bring a server back, so an application that fails its
    /// health check is not kept UP by traffic that happens to work.
    Ok,
}

/// A change of health state, with the line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub up: bool,
    /// `web/web2 DOWN: 3 consecutive failures (connection refused)`.
    pub reason: String,
    pub at: Instant,
}

/// The knobs of one checker (from `HealthCheck`, without the probe kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub initial_up: bool,
    pub observe_connect_errors: bool,
    pub observe_5xx: bool,
}

impl Params {
    pub fn from_check(hc: &crate::config::HealthCheck) -> Params {
        Params {
            interval: hc.interval,
            fast_interval: hc.fast_interval,
            rise: hc.rise,
            fall: hc.fall,
            initial_up: hc.initial_up,
            observe_connect_errors: hc.observe_connect_errors,
            observe_5xx: hc.observe_5xx,
        }
    }
}

/// Health state of one server.
#[derive(Debug, Clone)]
pub struct Checker {
    /// `service/server`, the prefix of every reason line.
    label: String,
    params: Params,
    up: bool,
    /// The state has not been confirmed by any result yet.
    provisional: bool,
    /// Consecutive results contradicting `up`.
    streak: u32,
    next_probe: Instant,
    /// When `up` last changed (or the checker was created).
    since: Instant,
    last: Option<LastResult>,
    rng: SplitMix64,
}

/// The most recent observation, for `halo status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    pub ok: bool,
    pub detail: String,
    pub at: Instant,
    /// True when it came from real traffic rather than a probe.
    pub passive: bool,
}

/// Largest jitter as a fraction of the spacing: ±1/16 (about 6 %), in the
/// range HAProxy's documentation suggests for `spread-checks` (2-5 %) while
/// still spreading checks at 100 ms fast intervals.
const JITTER_DIV: u32 = 16;

impl Checker {
    /// A checker created at `now`. The first probe is due after
    /// `first_delay`, which the caller spreads over the servers it checks
    /// (as HAProxy spreads the first checks over the interval); `seed` makes
    /// this checker's jitter sequence differ from its neighbours'.
    pub fn new(
        label: impl Into<String>,
        params: Params,
        now: Instant,
        first_delay: Duration,
        seed: u64,
    ) -> Checker {
        Checker {
            label: label.into(),
            up: params.initial_up,
            params,
            provisional: true,
            streak: 0,
            next_probe: now + first_delay,
            since: now,
            last: None,
            rng: SplitMix64(seed),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
    pub fn last(&self) -> Option<&LastResult> {
        self.last.as_ref()
    }
    /// Consecutive results against the current state so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }
    /// True until a result has confirmed or flipped the initial state.
    pub fn is_provisional(&self) -> bool {
        self.provisional
    }
    /// True while the server is between states (probes use `fast_interval`).
    pub fn in_transition(&self) -> bool {
        self.provisional || self.streak > 0
    }

    /// When the next active probe is due.
    #[must_use]
    pub fn next_probe(&self) -> Instant {
        self.next_probe
    }

    /// Feed the result of an active probe that finished at `now`; the next
    /// probe is scheduled from `now`.
    #[must_use]
    pub fn observe(&mut self, now: Instant, result: CheckResult) -> Option<Transition> {
        let t = self.apply(now, result.ok, result.detail, false);
        let base = if self.in_transition() {
            self.params.fast_interval
        } else {
            self.params.interval
        };
        self.next_probe = now + self.jittered(base);
        t
    }

    /// Feed an observation from real traffic. Failures count toward `fall`
    /// only when the service observes that kind of failure; successes are
    /// ignored (see [`PassiveEvent::Ok`]). A failure that starts a streak
    /// pulls the next probe forward to `fast_interval`, so an active check
    /// confirms or clears the suspicion quickly.
    #[must_use]
    pub fn observe_passive(&mut self, now: Instant, ev: PassiveEvent) -> Option<Transition> {
        let detail = match ev {
            PassiveEvent::ConnectFailed if self.params.observe_connect_errors => {
                "connect failed on client traffic"
            }
            PassiveEvent::Status5xx if self.params.observe_5xx => "5xx response on client traffic",
            _ => return None,
        };
        let t = self.apply(now, false, detail.to_string(), true);
        if self.in_transition() {
            let soon = now + self.jittered(self.params.fast_interval);
            if soon < self.next_probe {
                self.next_probe = soon;
            }
        }
        t
    }

    fn apply(
        &mut self,
        now: Instant,
        ok: bool,
        detail: String,
        passive: bool,
    ) -> Option<Transition> {
        let agrees = ok == self.up;
        let transition = if agrees {
            self.streak = 0;
            self.provisional = false;
            None
        } else {
            self.streak += 1;
            let needed = if self.provisional {
                1
            } else if self.up {
                self.params.fall.max(1)
            } else {
                self.params.rise.max(1)
            };
            if self.streak >= needed {
                Some(self.flip(now, &detail))
            } else {
                None
            }
        };
        self.last = Some(LastResult {
            ok,
            detail,
            at: now,
            passive,
        });
        transition
    }

    fn flip(&mut self, now: Instant, detail: &str) -> Transition {
        let n = self.streak;
        let what = match (self.up, n) {
            (true, 1) => "1 failure".to_string(),
            (true, _) => format!("{n} consecutive failures"),
            (false, 1) => "1 success".to_string(),
            (false, _) => format!("{n} consecutive successes"),
        };
        let startup = if self.provisional { " at startup" } else { "" };
        self.up = !self.up;
        self.streak = 0;
        self.provisional = false;
        self.since = now;
        let state = if self.up { "UP" } else { "DOWN" };
        Transition {
            up: self.up,
            reason: format!("{} {state}: {what}{startup} ({detail})", self.label),
            at: now,
        }
    }

    /// `base` moved by up to ±base/16, never to zero.
    fn jittered(&mut self, base: Duration) -> Duration {
        let span = base / JITTER_DIV;
        let span_ns = span.as_nanos() as u64;
        if span_ns == 0 {
            return base.max(Duration::from_millis(1));
        }
        // Uniform in [0, 2*span]; the modulo bias is negligible at these sizes.
        let r = self.rng.next() % (2 * span_ns + 1);
        let d = base - span + Duration::from_nanos(r);
        d.max(Duration::from_millis(1))
    }
}

/// splitmix64: tiny, seedable, and good enough to decorrelate check times.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(initial_up: bool) -> Params {
        Params {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            rise: 2,
            fall: 3,
            initial_up,
            observe_connect_errors: true,
            observe_5xx: false,
        }
    }

    fn ok() -> CheckResult {
        CheckResult::success("200 OK")
    }
    fn refused() -> CheckResult {
        CheckResult::failure("connection refused")
    }

    /// A checker that has confirmed its initial state, as after one agreeing check.
    fn settled(initial_up: bool, t0: Instant) -> Checker {
        let mut c = Checker::new("web/web2", params(initial_up), t0, Duration::ZERO, 7);
        let r = if initial_up { ok() } else { refused() };
        assert_eq!(c.observe(t0, r), None);
        assert!(!c.in_transition());
        c
    }

    #[test]
    fn falls_after_fall_consecutive_failures_with_reason() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        assert_eq!(c.observe(t0 + Duration::from_secs(1), refused()), None);
        assert_eq!(c.observe(t0 + Duration::from_secs(2), refused()), None);
        assert!(c.is_up());
        let t = c
            .observe(t0 + Duration::from_secs(3), refused())
            .expect("goes down");
        assert!(!t.up);
        assert_eq!(
            t.reason,
            "web/web2 DOWN: 3 consecutive failures (connection refused)"
        );
        assert_eq!(t.at, t0 + Duration::from_secs(3));
        assert!(!c.is_up());
        assert_eq!(c.since(), t0 + Duration::from_secs(3));
    }

    #[test]
    fn rises_after_rise_consecutive_successes_with_reason() {
        let t0 = Instant::now();
        let mut c = settled(false, t0);
        assert_eq!(c.observe(t0 + Duration::from_secs(1), ok()), None);
        let t = c
            .observe(t0 + Duration::from_secs(2), ok())
            .expect("comes up");
        assert!(t.up);
        assert_eq!(t.reason, "web/web2 UP: 2 consecutive successes (200 OK)");
        assert!(c.is_up());
    }

    #[test]
    fn an_agreeing_result_resets_the_streak() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        for i in 0..10u64 {
            // fail, fail, ok: never three in a row.
            let r = if i % 3 == 2 { ok() } else { refused() };
            assert_eq!(c.observe(t0 + Duration::from_secs(i), r), None, "step {i}");
        }
        assert!(c.is_up());
        let mut d = settled(false, t0);
        for i in 0..10u64 {
            let r = if i % 2 == 1 { refused() } else { ok() };
            assert_eq!(d.observe(t0 + Duration::from_secs(i), r), None, "step {i}");
        }
        assert!(!d.is_up());
    }

    #[test]
    fn initial_up_is_provisional_one_failure_takes_it_down() {
        let t0 = Instant::now();
        let mut c = Checker::new("web/web1", params(true), t0, Duration::ZERO, 1);
        assert!(c.is_up());
        assert!(c.in_transition());
        let t = c.observe(t0, refused()).expect("down at once");
        assert_eq!(
            t.reason,
            "web/web1 DOWN: 1 failure at startup (connection refused)"
        );
        // Now settled DOWN: coming back needs the full `rise`.
        assert_eq!(c.observe(t0 + Duration::from_secs(1), ok()), None);
        assert!(c.observe(t0 + Duration::from_secs(2), ok()).is_some());
    }

    #[test]
    fn initial_down_is_provisional_one_success_brings_it_up() {
        let t0 = Instant::now();
        let mut c = Checker::new("web/web1", params(false), t0, Duration::ZERO, 1);
        assert!(!c.is_up());
        let t = c.observe(t0, ok()).expect("up at once");
        assert_eq!(t.reason, "web/web1 UP: 1 success at startup (200 OK)");
        // Now settled UP: going down needs the full `fall`.
        for i in 1..3u64 {
            assert_eq!(c.observe(t0 + Duration::from_secs(i), refused()), None);
        }
        assert!(c.observe(t0 + Duration::from_secs(3), refused()).is_some());
    }

    #[test]
    fn rise_and_fall_of_one() {
        let t0 = Instant::now();
        let mut p = params(true);
        p.rise = 1;
        p.fall = 1;
        let mut c = Checker::new("a/b", p, t0, Duration::ZERO, 3);
        assert_eq!(c.observe(t0, ok()), None);
        assert_eq!(
            c.observe(t0, refused()).unwrap().reason,
            "a/b DOWN: 1 failure (connection refused)"
        );
        assert_eq!(
            c.observe(t0, ok()).unwrap().reason,
            "a/b UP: 1 success (200 OK)"
        );
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let t0 = Instant::now();
        let mut p = params(true);
        p.rise = 0;
        p.fall = 0;
        let mut c = settled(true, t0);
        c.params = p;
        assert!(c.observe(t0, refused()).is_some());
        assert!(c.observe(t0, ok()).is_some());
    }

    #[test]
    fn first_probe_after_first_delay() {
        let t0 = Instant::now();
        let c = Checker::new("a/b", params(true), t0, Duration::from_millis(300), 3);
        assert_eq!(c.next_probe(), t0 + Duration::from_millis(300));
    }

    fn within(d: Duration, base: Duration) -> bool {
        d >= base - base / 16 && d <= base + base / 16
    }

    #[test]
    fn fast_interval_while_between_states_interval_when_settled() {
        let t0 = Instant::now();
        let p = params(true);
        let mut c = Checker::new("a/b", p.clone(), t0, Duration::ZERO, 11);
        // Confirmed up: normal interval.
        let _ = c.observe(t0, ok());
        assert!(within(c.next_probe() - t0, p.interval));
        // One failure: falling, fast interval.
        let t1 = t0 + Duration::from_secs(2);
        let _ = c.observe(t1, refused());
        assert!(c.in_transition());
        assert!(within(c.next_probe() - t1, p.fast_interval));
        let t2 = t1 + Duration::from_millis(500);
        let _ = c.observe(t2, refused());
        assert!(within(c.next_probe() - t2, p.fast_interval));
        // Third failure: DOWN and settled, back to the interval.
        let t3 = t2 + Duration::from_millis(500);
        assert!(c.observe(t3, refused()).is_some());
        assert!(!c.in_transition());
        assert!(within(c.next_probe() - t3, p.interval));
        // Rising: fast again.
        let t4 = t3 + Duration::from_secs(2);
        let _ = c.observe(t4, ok());
        assert!(within(c.next_probe() - t4, p.fast_interval));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let t0 = Instant::now();
        let p = params(true);
        let mut c = settled(true, t0);
        let mut seen = std::collections::BTreeSet::new();
        let mut now = t0;
        for _ in 0..1000 {
            let _ = c.observe(now, ok());
            let d = c.next_probe() - now;
            assert!(within(d, p.interval), "{d:?} out of bounds");
            seen.insert(d);
            now = c.next_probe();
        }
        assert!(
            seen.len() > 900,
            "jitter barely varies: {} values",
            seen.len()
        );
    }

    #[test]
    fn different_seeds_give_different_schedules() {
        let t0 = Instant::now();
        let mut a = Checker::new("a/1", params(true), t0, Duration::ZERO, 1);
        let mut b = Checker::new("a/2", params(true), t0, Duration::ZERO, 2);
        let _ = a.observe(t0, ok());
        let _ = b.observe(t0, ok());
        assert_ne!(a.next_probe(), b.next_probe());
        // Same seed, same schedule: the jitter is deterministic.
        let mut c = Checker::new("a/3", params(true), t0, Duration::ZERO, 1);
        let _ = c.observe(t0, ok());
        assert_eq!(a.next_probe(), c.next_probe());
    }

    #[test]
    fn tiny_intervals_never_schedule_in_the_past() {
        let t0 = Instant::now();
        let mut p = params(true);
        p.interval = Duration::from_nanos(5);
        p.fast_interval = Duration::ZERO;
        let mut c = Checker::new("a/b", p, t0, Duration::ZERO, 1);
        let _ = c.observe(t0, ok());
        assert!(c.next_probe() > t0);
        let _ = c.observe(t0, refused());
        assert!(c.next_probe() > t0);
    }

    #[test]
    fn passive_connect_failures_count_toward_fall() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(c.observe_passive(t1, PassiveEvent::ConnectFailed), None);
        // The suspicion pulls the next probe forward to the fast interval.
        assert!(within(c.next_probe() - t1, Duration::from_millis(500)));
        // An active failure continues the same streak.
        assert_eq!(c.observe(t1, refused()), None);
        let t = c
            .observe_passive(t1, PassiveEvent::ConnectFailed)
            .expect("down");
        assert_eq!(
            t.reason,
            "web/web2 DOWN: 3 consecutive failures (connect failed on client traffic)"
        );
        let last = c.last().unwrap();
        assert!(last.passive && !last.ok);
    }

    #[test]
    fn passive_failure_never_delays_the_next_probe() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        let _ = c.observe(t0, refused()); // falling: probe in ~500 ms
        let due = c.next_probe();
        let _ = c.observe_passive(due - Duration::from_millis(1), PassiveEvent::ConnectFailed);
        assert_eq!(c.next_probe(), due);
    }

    #[test]
    fn passive_5xx_counts_only_when_observed() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        for _ in 0..10 {
            assert_eq!(c.observe_passive(t0, PassiveEvent::Status5xx), None);
        }
        assert_eq!(c.streak(), 0);
        let mut p = params(true);
        p.observe_5xx = true;
        p.observe_connect_errors = false;
        let mut d = Checker::new("a/b", p, t0, Duration::ZERO, 1);
        let _ = d.observe(t0, ok());
        for _ in 0..10 {
            assert_eq!(d.observe_passive(t0, PassiveEvent::ConnectFailed), None);
        }
        let _ = d.observe_passive(t0, PassiveEvent::Status5xx);
        let _ = d.observe_passive(t0, PassiveEvent::Status5xx);
        let t = d
            .observe_passive(t0, PassiveEvent::Status5xx)
            .expect("down");
        assert!(t.reason.ends_with("(5xx response on client traffic)"));
    }

    #[test]
    fn passive_success_neither_resets_a_fall_nor_raises() {
        let t0 = Instant::now();
        let mut c = settled(true, t0);
        let _ = c.observe(t0, refused());
        let _ = c.observe(t0, refused());
        assert_eq!(c.observe_passive(t0, PassiveEvent::Ok), None);
        assert_eq!(c.streak(), 2);
        assert!(c.observe(t0, refused()).is_some());
        for _ in 0..10 {
            assert_eq!(c.observe_passive(t0, PassiveEvent::Ok), None);
        }
        assert!(!c.is_up());
    }

    #[test]
    fn passive_failure_while_down_restarts_the_rise() {
        let t0 = Instant::now();
        let mut c = settled(false, t0);
        let _ = c.observe(t0, ok());
        assert_eq!(c.streak(), 1);
        let _ = c.observe_passive(t0, PassiveEvent::ConnectFailed);
        assert_eq!(c.streak(), 0);
        assert_eq!(c.observe(t0, ok()), None);
        assert!(c.observe(t0, ok()).is_some());
    }

    #[test]
    fn last_result_is_recorded() {
        let t0 = Instant::now();
        let mut c = Checker::new("a/b", params(true), t0, Duration::ZERO, 1);
        assert!(c.last().is_none());
        let _ = c.observe(t0 + Duration::from_secs(1), ok());
        let last = c.last().unwrap();
        assert_eq!(
            last,
            &LastResult {
                ok: true,
                detail: "200 OK".into(),
                at: t0 + Duration::from_secs(1),
                passive: false
            }
        );
    }
}
