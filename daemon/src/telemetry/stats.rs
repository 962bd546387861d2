//! Proxy traffic counters: per service and per server, requests by status
//! class, bytes, a fixed-bucket latency histogram, active connections,
//! retries and connect errors.
//!
//! Workers bump relaxed atomics on the hot path (no locks, no allocation);
//! readers take a [`TrafficSnapshot`] of plain numbers. The counters are
//! made from the config and kept across reloads by service and server name,
//! so a reload does not reset what `/metrics` reports for a server that
//! stays. Rates (`requests/s`) are computed by [`RateWindow`] from samples
//! taken when someone looks; no timer runs here.
//!
//! Not here: rendering (`admin::metrics`), the status view (`status`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ProxyService;

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`). The
/// last bucket, `+Inf`, is implicit. From a cached page on the LAN (1 ms)
/// to a slow backend at the default server timeout.
pub const LATENCY_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status classes counted: 1xx..5xx, and "other" for a request that ended
/// without a status (the client left before an answer).
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn class_of(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

fn bucket_of(d: Duration) -> usize {
    let s = d.as_secs_f64();
    LATENCY_BOUNDS
        .iter()
        .position(|&b| s <= b)
        .unwrap_or(LATENCY_BOUNDS.len())
}

/// What follows a failed connect: another attempt (counted in `retries`)
/// or none (the request is answered with an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterConnectFailure {
    Retry,
    GiveUp,
}

// === Traffic: one set of counters ===

/// The counters of one service (all its requests) or one server.
#[derive(Default)]
pub struct Traffic {
    classes: [AtomicU64; 6],
    /// Request bytes sent to servers (heads as rewritten, bodies as sent).
    bytes_in: AtomicU64,
    /// Response bytes written to clients, error pages included.
    bytes_out: AtomicU64,
    /// Per bucket, not cumulative; the last one is `+Inf`.
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_us: AtomicU64,
    /// Service: client connections open. Server: requests in flight.
    active: AtomicU64,
    /// Connect failures followed by another attempt.
    retries: AtomicU64,
    connect_errors: AtomicU64,
}

/// A copy of [`Traffic`] in plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSnapshot {
    /// Indexed like [`CLASSES`].
    pub classes: [u64; 6],
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Per bucket of [`LATENCY_BOUNDS`] plus `+Inf`, not cumulative.
    pub latency: Vec<u64>,
    pub latency_sum_secs: f64,
    pub active: u64,
    pub retries: u64,
    pub connect_errors: u64,
}

impl TrafficSnapshot {
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }
    pub fn errors(&self) -> u64 {
        self.classes[4]
    }
}

impl Traffic {
    fn response(&self, status: u16, bytes_out: u64, elapsed: Duration) {
        self.classes[class_of(status)].fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
        self.latency[bucket_of(elapsed)].fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    fn open(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    fn close(&self) {
        // Never below zero, even if a close were ever counted twice.
        let _ = self
            .active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    fn connect_failed(&self, next: AfterConnectFailure) {
        self.connect_errors.fetch_add(1, Relaxed);
        if next == AfterConnectFailure::Retry {
            self.retries.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            classes: std::array::from_fn(|i| self.classes[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency: self.latency.iter().map(|c| c.load(Relaxed)).collect(),
            latency_sum_secs: self.latency_sum_us.load(Relaxed) as f64 / 1e6,
            active: self.active.load(Relaxed),
            retries: self.retries.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
        }
    }
}

// === ServiceStats: what the proxy holds ===

/// One service's counters and those of its servers, indexed like
/// `ProxyService::servers`. Every call updates the service and, when a
/// server is named, that server.
pub struct ServiceStats {
    pub name: String,
    total: Arc<Traffic>,
    servers: Vec<(String, Arc<Traffic>)>,
}

impl ServiceStats {
    fn both(&self, server: Option<usize>) -> impl Iterator<Item = &Traffic> {
        std::iter::once(&*self.total)
            .chain(server.and_then(|i| self.servers.get(i)).map(|(_, t)| &**t))
    }

    /// A request finished (answered, refused or abandoned): its status
    /// (0 if none was sent), response bytes and time from its first byte.
    pub fn response(&self, server: Option<usize>, status: u16, bytes_out: u64, elapsed: Duration) {
        for t in self.both(server) {
            t.response(status, bytes_out, elapsed);
        }
    }

    /// Bytes of a request sent to `server`.
    pub fn sent(&self, server: usize, bytes: u64) {
        for t in self.both(Some(server)) {
            t.bytes_in.fetch_add(bytes, Relaxed);
        }
    }

    /// A client connection opened / closed.
    pub fn conn_open(&self) {
        self.total.open();
    }
    pub fn conn_close(&self) {
        self.total.close();
    }

    /// A request took / released a slot on `server`.
    pub fn server_busy(&self, server: usize) {
        if let Some((_, t)) = self.servers.get(server) {
            t.open();
        }
    }
    pub fn server_idle(&self, server: usize) {
        if let Some((_, t)) = self.servers.get(server) {
            t.close();
        }
    }

    /// Connecting to `server` failed, and what follows.
    pub fn connect_failed(&self, server: usize, next: AfterConnectFailure) {
        for t in self.both(Some(server)) {
            t.connect_failed(next);
        }
    }

    pub fn total(&self) -> TrafficSnapshot {
        self.total.snapshot()
    }

    /// (server name, counters) in config order.
    pub fn servers(&self) -> Vec<(String, TrafficSnapshot)> {
        self.servers
            .iter()
            .map(|(n, t)| (n.clone(), t.snapshot()))
            .collect()
    }
}

/// One service's counters in plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub name: String,
    pub total: TrafficSnapshot,
    pub servers: Vec<(String, TrafficSnapshot)>,
}

// === ProxyStats: all services ===

/// Every service's counters, plus the rate windows of the status view.
pub struct ProxyStats {
    services: Vec<Arc<ServiceStats>>,
    rates: Mutex<BTreeMap<(String, String), RateWindow>>,
}

impl ProxyStats {
    /// Counters for `services`; those of a service or server with the same
    /// name in `previous` carry over (a reload keeps the totals).
    pub fn new(services: &[ProxyService], previous: Option<&ProxyStats>) -> Arc<ProxyStats> {
        let old = |svc: &str| previous.and_then(|p| p.services.iter().find(|s| s.name == svc));
        let services = services
            .iter()
            .map(|svc| {
                let prev = old(&svc.name);
                let servers = svc
                    .servers
                    .iter()
                    .map(|srv| {
                        let t = prev
                            .and_then(|p| p.servers.iter().find(|(n, _)| *n == srv.name))
                            .map(|(_, t)| t.clone())
                            .unwrap_or_default();
                        (srv.name.clone(), t)
                    })
                    .collect();
                Arc::new(ServiceStats {
                    name: svc.name.clone(),
                    total: prev.map(|p| p.total.clone()).unwrap_or_default(),
                    servers,
                })
            })
            .collect();
        let rates = previous
            .map(|p| p.rates.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        Arc::new(ProxyStats {
            services,
            rates: Mutex::new(rates),
        })
    }

    /// The counters of the service at `idx` in the config. An index past
    /// the end gets counters of their own, counted nowhere visible.
    pub fn service(&self, idx: usize) -> Arc<ServiceStats> {
        self.services.get(idx).cloned().unwrap_or_else(|| {
            Arc::new(ServiceStats {
                name: String::new(),
                total: Arc::default(),
                servers: Vec::new(),
            })
        })
    }

    pub fn services(&self) -> &[Arc<ServiceStats>] {
        &self.services
    }

    /// Every counter, in config order.
    pub fn read(&self) -> Vec<ServiceTraffic> {
        self.services
            .iter()
            .map(|s| ServiceTraffic {
                name: s.name.clone(),
                total: s.total(),
                servers: s.servers(),
            })
            .collect()
    }

    /// A server's counters by name.
    pub fn server(&self, service: &str, server: &str) -> Option<TrafficSnapshot> {
        let svc = self.services.iter().find(|s| s.name == service)?;
        let (_, t) = svc.servers.iter().find(|(n, _)| n == server)?;
        Some(t.snapshot())
    }

    /// Requests per second of a server, from the samples taken at each look.
    pub fn rate(&self, now: Instant, service: &str, server: &str, requests: u64) -> f64 {
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        rates
            .entry((service.to_string(), server.to_string()))
            .or_default()
            .observe(now, requests)
    }
}

// === RateWindow ===

/// How far back a rate looks when it is sampled often.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A counter's rate from the samples it was given: the increase since the
/// newest sample at least [`RATE_WINDOW`] old (or the oldest one kept).
/// Looked at every second it is a 10 s average; looked at once after a long
/// pause it is the average over that pause.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub fn observe(&mut self, now: Instant, count: u64) -> f64 {
        if let Some(&(t, c)) = self.samples.back() {
            if now < t || count < c {
                // A clock step back or a counter reset: start over.
                self.samples.clear();
            }
        }
        self.samples.push_back((now, count));
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= RATE_WINDOW
        {
            self.samples.pop_front();
        }
        // Bounded even if looked at thousands of times a second.
        while self.samples.len() > 64 {
            self.samples.remove(1);
        }
        let (t0, c0) = self.samples[0];
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            0.0
        } else {
            (count - c0) as f64 / dt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<ProxyService> {
        crate::config::parse_str(
            "t.toml",
            r#"
[proxy.web]
bind = ["127.0.0.1:8080"]
servers = [
  { name = "a", address = "127.0.0.1:1" },
  { name = "b", address = "127.0.0.1:2" },
]
"#,
        )
        .expect("valid config")
        .proxy
    }

    #[test]
    fn classes_and_buckets() {
        assert_eq!(class_of(101), 0);
        assert_eq!(class_of(204), 1);
        assert_eq!(class_of(399), 2);
        assert_eq!(class_of(404), 3);
        assert_eq!(class_of(503), 4);
        assert_eq!(class_of(0), 5);
        assert_eq!(class_of(600), 5);
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_millis(1)), 0);
        assert_eq!(bucket_of(Duration::from_micros(1001)), 1);
        assert_eq!(bucket_of(Duration::from_secs(10)), 12);
        assert_eq!(bucket_of(Duration::from_secs(11)), 13);
    }

    #[test]
    fn counts_go_to_service_and_server() {
        let st = ProxyStats::new(&services(), None);
        let web = st.service(0);
        web.response(Some(1), 200, 100, Duration::from_millis(3));
        web.response(None, 503, 10, Duration::from_micros(10));
        web.sent(1, 50);
        web.connect_failed(0, AfterConnectFailure::Retry);
        web.connect_failed(0, AfterConnectFailure::GiveUp);
        web.server_busy(1);
        web.conn_open();
        let total = web.total();
        assert_eq!(total.requests(), 2);
        assert_eq!(total.errors(), 1);
        assert_eq!(total.bytes_out, 110);
        assert_eq!(total.bytes_in, 50);
        assert_eq!(total.retries, 1);
        assert_eq!(total.connect_errors, 2);
        assert_eq!(total.active, 1);
        assert_eq!(total.latency.iter().sum::<u64>(), 2);
        assert!((total.latency_sum_secs - 0.00301).abs() < 1e-9);
        let b = st.server("web", "b").expect("server b");
        assert_eq!(b.classes, [0, 1, 0, 0, 0, 0]);
        assert_eq!(b.latency[2], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(b.active, 1);
        let a = st.server("web", "a").expect("server a");
        assert_eq!((a.requests(), a.connect_errors, a.retries), (0, 2, 1));
        web.server_idle(1);
        web.server_idle(1);
        assert_eq!(st.server("web", "b").map(|b| b.active), Some(0));
        // Out-of-range indexes are ignored, never a panic.
        web.server_busy(7);
        web.connect_failed(7, AfterConnectFailure::Retry);
        st.service(9).response(Some(3), 200, 1, Duration::ZERO);
    }

    #[test]
    fn reload_keeps_counters_by_name() {
        let old = ProxyStats::new(&services(), None);
        old.service(0).response(Some(0), 200, 1, Duration::ZERO);
        let mut svcs = services();
        svcs[0].servers.remove(1);
        svcs[0].servers[0].weight = 5;
        let new = ProxyStats::new(&svcs, Some(&old));
        assert_eq!(new.server("web", "a").map(|a| a.requests()), Some(1));
        assert_eq!(new.server("web", "b"), None);
        assert_eq!(new.service(0).total().requests(), 1);
    }

    #[test]
    fn rate_over_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        assert_eq!(w.observe(t0, 0), 0.0);
        assert_eq!(w.observe(t0 + Duration::from_secs(2), 20), 10.0);
        // Sampled every second at 5/s: the window slides, the rate follows.
        let mut n = 20;
        for s in 3..=30 {
            n += 5;
            let r = w.observe(t0 + Duration::from_secs(s), n);
            if s >= 13 {
                assert!((r - 5.0).abs() < 1e-9, "at {s}s: {r}");
            }
        }
        assert!(w.samples.len() <= 12);
        // A counter that went down (a new counter) starts over.
        assert_eq!(w.observe(t0 + Duration::from_secs(31), 3), 0.0);
    }
}
