//! `HealthBoard`: the health state every other part of halo reads.
//!
//! The proxy asks [`HealthBoard::is_up`] on every request (two relaxed
//! atomic loads, no lock) and reports what it sees on real traffic
//! ([`HealthBoard::report`]); VRRP tracking waits on
//! [`HealthBoard::subscribe`] and reads [`HealthBoard::service_up`]; the
//! probe driver (`health::mod`) feeds active results in through
//! [`HealthBoard::observe_check`]. Each server's rise/fall logic is a pure
//! [`Checker`] kept here behind a mutex that only the slow paths (check
//! results, passive failures, status) take.
//!
//! It does no I/O besides logging and reading the clock for passive events.
//! It does not run probes.
//!
//! Servers of a service without a `[health]` table have no checker: they
//! are always healthy and passive reports about them are ignored, as
//! HAProxy ignores `observe` on servers without `check`. Listeners count as
//! OK until the proxy says otherwise.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::checker::{CheckResult, Checker, Params, PassiveEvent, Transition};
use crate::config::ProxyService;

/// Operator state of a server, independent of its health. In JSON
/// (`/status.json`, the control socket) and `/metrics` labels it is
/// `enabled`, `drain` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new requests when healthy.
    #[default]
    Enabled,
    /// Takes no new requests; requests in flight finish, idle pooled
    /// connections close (the proxy's `Worker::apply_admin`).
    Drain,
    /// Out at once: takes no requests, and those in flight are cut.
    /// (Checks keep running, so the state is known when it is enabled
    /// again.)
    Disabled,
}

impl AdminState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [AdminState; 3] = [AdminState::Enabled, AdminState::Drain, AdminState::Disabled];

    fn to_u8(self) -> u8 {
        match self {
            AdminState::Enabled => 0,
            AdminState::Drain => 1,
            AdminState::Disabled => 2,
        }
    }
    fn from_u8(v: u8) -> AdminState {
        match v {
            0 => AdminState::Enabled,
            1 => AdminState::Drain,
            _ => AdminState::Disabled,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that `halo status` can align it in a column.
        f.pad(self.as_str())
    }
}

/// One server as `halo status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub name: String,
    pub address: std::net::SocketAddr,
    /// Health alone (checks and passive observations).
    pub healthy: bool,
    pub admin: AdminState,
    /// `healthy` and enabled: what `is_up` answers.
    pub usable: bool,
    /// False when the service has no `[health]` table.
    pub checked: bool,
    /// Results so far against the current state (a fall or rise in progress).
    pub streak: u32,
    /// The last observation's text (`200 OK`, `connection refused`, ...).
    pub last_result: Option<String>,
    pub last_ok: Option<bool>,
    /// When the last observation was made.
    pub last_at: Option<Instant>,
    /// When `healthy` last changed (or the board was created).
    pub since: Instant,
}

/// One service as `halo status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    /// What `service_up` answers.
    pub up: bool,
    pub listeners_ok: bool,
    pub servers: Vec<ServerStatus>,
}

struct ServerSlot {
    name: String,
    address: std::net::SocketAddr,
    /// Mirrors the checker's state for lock-free reads.
    healthy: AtomicBool,
    admin: AtomicU8,
    checker: Option<Mutex<Checker>>,
    /// Wakes the probe task when a passive failure moves the next probe earlier.
    wake: Notify,
    /// Since when `healthy` holds, for servers without a checker.
    created: Instant,
}

struct ServiceSlot {
    name: String,
    /// The `[health]` table the checkers were made for: a reload carries
    /// a checker over only when this stays the same.
    health: Option<crate::config::HealthCheck>,
    servers: Vec<ServerSlot>,
    listeners_ok: AtomicBool,
    /// The last `service_up` value published; the mutex serialises
    /// recomputation so two threads cannot publish out of order.
    published: Mutex<bool>,
    up: AtomicBool,
}

/// Shared health state; see the module documentation.
pub struct HealthBoard {
    services: Vec<ServiceSlot>,
    changes: watch::Sender<u64>,
    /// Bumped on every admin state change: the proxy's workers then close
    /// idle connections to drained and disabled servers and cut the
    /// requests in flight to disabled ones.
    admin_changes: watch::Sender<u64>,
    /// Bumped on every server transition and admin change.
    server_changes: watch::Sender<u64>,
    /// The boards of earlier generations (before reloads) still in use:
    /// their connections serve a last request and finish the ones in
    /// flight, and an admin change made here must reach them too
    /// ([`HealthBoard::set_admin`]). Weak: a generation that ended frees
    /// its board.
    retired: Vec<Weak<HealthBoard>>,
}

impl std::fmt::Debug for HealthBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthBoard")
            .field("services", &self.services.len())
            .finish()
    }
}

/// A poisoned lock only means another thread panicked mid-update of a
/// checker, whose state is still consistent field by field; keep going
/// rather than take the whole data path down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HealthBoard {
    // `new`, `new_after` and `report` are the drivers' entry points and
    // read the clock (clippy.toml); tests use the `_at` forms.
    #[allow(clippy::disallowed_methods)]
    pub fn new(services: &[ProxyService]) -> Arc<HealthBoard> {
        Self::new_at(services, Instant::now())
    }

    /// As [`HealthBoard::new`], with the creation time given. The first
    /// probes of all checked servers are spread evenly over the first
    /// `fast_interval`, in order, so they do not all fire at once.
    pub fn new_at(services: &[ProxyService], now: Instant) -> Arc<HealthBoard> {
        let total: u32 = services
            .iter()
            .filter(|s| s.health.is_some())
            .map(|s| s.servers.len() as u32)
            .sum();
        let mut k = 0u32;
        let slots = services
            .iter()
            .enumerate()
            .map(|(si, svc)| {
                let servers: Vec<ServerSlot> = svc
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(vi, srv)| {
                        let checker = svc.health.as_ref().map(|hc| {
                            let first = hc.fast_interval.min(hc.interval) * k / total.max(1);
                            k += 1;
                            let seed = ((si as u64) << 32) ^ (vi as u64) ^ 0x68616c6f;
                            Checker::new(
                                format!("{}/{}", svc.name, srv.name),
                                Params::from_check(hc),
                                now,
                                first,
                                seed,
                            )
                        });
                        ServerSlot {
                            name: srv.name.clone(),
                            address: srv.address,
                            healthy: AtomicBool::new(
                                checker.as_ref().map(|c| c.is_up()).unwrap_or(true),
                            ),
                            admin: AtomicU8::new(AdminState::Enabled.to_u8()),
                            checker: checker.map(Mutex::new),
                            wake: Notify::new(),
                            created: now,
                        }
                    })
                    .collect();
                let up = servers.iter().any(|s| s.healthy.load(Ordering::Relaxed));
                ServiceSlot {
                    name: svc.name.clone(),
                    health: svc.health.clone(),
                    servers,
                    listeners_ok: AtomicBool::new(true),
                    published: Mutex::new(up),
                    up: AtomicBool::new(up),
                }
            })
            .collect();
        let (changes, _) = watch::channel(0);
        let (admin_changes, _) = watch::channel(0);
        let (server_changes, _) = watch::channel(0);
        Arc::new(HealthBoard {
            services: slots,
            changes,
            admin_changes,
            server_changes,
            retired: Vec::new(),
        })
    }

    /// The board for a reload: as [`HealthBoard::new`], except that every
    /// server the reload does not change keeps what `prev` knows of it (its
    /// health, the rise/fall streak, the last result, when it changed, when
    /// the next probe is due). Unchanged means: same service name with the
    /// same `[health]` table, same server name and address. A server that
    /// is DOWN therefore stays DOWN instead of starting over from
    /// `initial_up` (and flapping VRRP tracking) after every reload.
    ///
    /// `prev` and the boards it retired, those still in use, are retired
    /// by the new one: admin changes made on it reach them too.
    #[allow(clippy::disallowed_methods)]
    pub fn new_after(services: &[ProxyService], prev: &Arc<HealthBoard>) -> Arc<HealthBoard> {
        let mut board = Self::new_at(services, Instant::now());
        let b = Arc::get_mut(&mut board).expect("not shared yet");
        b.retired = prev
            .retired
            .iter()
            .filter(|w| w.strong_count() > 0)
            .cloned()
            .chain([Arc::downgrade(prev)])
            .collect();
        for s in &mut b.services {
            let Some(old) = prev
                .services
                .iter()
                .find(|o| o.name == s.name && o.health == s.health)
            else {
                continue;
            };
            for v in &mut s.servers {
                let kept = old
                    .servers
                    .iter()
                    .find(|o| o.name == v.name && o.address == v.address)
                    .and_then(|o| o.checker.as_ref());
                if let (Some(kept), Some(c)) = (kept, v.checker.as_mut()) {
                    let kept = lock(kept).clone();
                    *v.healthy.get_mut() = kept.is_up();
                    *c.get_mut().unwrap_or_else(|p| p.into_inner()) = kept;
                }
            }
            let up = s.servers.iter().any(|v| v.healthy.load(Ordering::Relaxed));
            *s.published.get_mut().unwrap_or_else(|p| p.into_inner()) = up;
            *s.up.get_mut() = up;
        }
        board
    }

    fn server(&self, svc: usize, srv: usize) -> Option<&ServerSlot> {
        self.services.get(svc)?.servers.get(srv)
    }

    // === the proxy's hot path ===

    /// Usable for new requests: healthy and enabled. False for indexes that
    /// do not exist.
    #[inline]
    pub fn is_up(&self, svc: usize, srv: usize) -> bool {
        match self.server(svc, srv) {
            Some(s) => {
                s.healthy.load(Ordering::Relaxed)
                    && s.admin.load(Ordering::Relaxed) == AdminState::Enabled.to_u8()
            }
            None => false,
        }
    }

    /// What the proxy saw on real traffic. `PassiveEvent::Ok` costs nothing.
    #[allow(clippy::disallowed_methods)]
    pub fn report(&self, svc: usize, srv: usize, ev: PassiveEvent) {
        self.report_at(svc, srv, ev, Instant::now());
    }

    /// As [`HealthBoard::report`], at a given time.
    pub fn report_at(&self, svc: usize, srv: usize, ev: PassiveEvent, now: Instant) {
        if ev == PassiveEvent::Ok {
            return;
        }
        let Some(slot) = self.server(svc, srv) else {
            return;
        };
        let Some(checker) = &slot.checker else {
            return;
        };
        let (t, due) = {
            let mut c = lock(checker);
            let before = c.next_probe();
            let t = c.observe_passive(now, ev);
            if let Some(t) = &t {
                // Stored under the checker's lock so that racing
                // transitions land in the order the checker made them.
                slot.healthy.store(t.up, Ordering::Relaxed);
            }
            (t, c.next_probe() < before)
        };
        if due {
            slot.wake.notify_one();
        }
        if let Some(t) = t {
            self.publish(svc, srv, t);
        }
    }

    // === listeners, admin ===

    pub fn set_listener_ok(&self, svc: usize, ok: bool) {
        let Some(s) = self.services.get(svc) else {
            return;
        };
        if s.listeners_ok.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!(service = %s.name, "{}: listener OK", s.name);
            } else {
                tracing::warn!(service = %s.name, "{}: listener failed", s.name);
            }
            self.recompute(svc);
        }
    }

    /// Set a server's admin state, here and, by service and server name,
    /// on the retired boards still in use (see `retired`): a reload's old
    /// generation must not send its last requests to a server disabled
    /// after the reload, nor keep one in flight to it.
    pub fn set_admin(&self, svc: usize, srv: usize, admin: AdminState) {
        let Some(slot) = self.server(svc, srv) else {
            return;
        };
        // The old boards first: a proxy worker woken by this board's
        // change applies the state to old generations' connections too,
        // and must find it there already.
        let svc_name = &self.services[svc].name;
        for old in self.retired.iter().filter_map(Weak::upgrade) {
            let found = old.services.iter().enumerate().find_map(|(osi, s)| {
                let ovi = (s.name == *svc_name)
                    .then(|| s.servers.iter().position(|v| v.name == slot.name))??;
                Some((osi, ovi))
            });
            if let Some((osi, ovi)) = found {
                old.store_admin(osi, ovi, admin, false);
            }
        }
        self.store_admin(svc, srv, admin, true);
    }

    /// [`HealthBoard::set_admin`] on this board alone; `log`: say so (the
    /// retired boards' copies are not logged again).
    fn store_admin(&self, svc: usize, srv: usize, admin: AdminState, log: bool) {
        let Some(slot) = self.server(svc, srv) else {
            return;
        };
        let old = AdminState::from_u8(slot.admin.swap(admin.to_u8(), Ordering::Relaxed));
        if old == admin {
            return;
        }
        if log {
            let svc_name = &self.services[svc].name;
            tracing::info!(
                service = %svc_name,
                server = %slot.name,
                "{svc_name}/{} admin state {} -> {}",
                slot.name,
                old.as_str(),
                admin.as_str()
            );
        }
        self.server_changes.send_modify(|n| *n = n.wrapping_add(1));
        self.recompute(svc);
        self.admin_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes when some server's admin state changes.
    pub fn subscribe_admin(&self) -> watch::Receiver<u64> {
        self.admin_changes.subscribe()
    }

    pub fn admin(&self, svc: usize, srv: usize) -> Option<AdminState> {
        self.server(svc, srv)
            .map(|s| AdminState::from_u8(s.admin.load(Ordering::Relaxed)))
    }

    // === VRRP tracking ===

    /// At least one server usable and every listener OK. False for an
    /// index that does not exist.
    pub fn service_up(&self, svc: usize) -> bool {
        self.services
            .get(svc)
            .map(|s| s.up.load(Ordering::Relaxed))
            .unwrap_or(false)
    }

    /// The index of the service called `name` (for `track = [{ proxy = ... }]`).
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The value is bumped every time some service's `service_up` changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The value is bumped every time some server's usability changes
    /// (health or admin state): what the l4 tables are built from.
    pub fn subscribe_servers(&self) -> watch::Receiver<u64> {
        self.server_changes.subscribe()
    }

    // === status ===

    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| ServiceStatus {
                name: s.name.clone(),
                up: s.up.load(Ordering::Relaxed),
                listeners_ok: s.listeners_ok.load(Ordering::Relaxed),
                servers: s
                    .servers
                    .iter()
                    .map(|v| {
                        let admin = AdminState::from_u8(v.admin.load(Ordering::Relaxed));
                        let healthy = v.healthy.load(Ordering::Relaxed);
                        let mut st = ServerStatus {
                            name: v.name.clone(),
                            address: v.address,
                            healthy,
                            admin,
                            usable: healthy && admin == AdminState::Enabled,
                            checked: v.checker.is_some(),
                            streak: 0,
                            last_result: None,
                            last_ok: None,
                            last_at: None,
                            since: v.created,
                        };
                        if let Some(c) = &v.checker {
                            let c = lock(c);
                            st.streak = c.streak();
                            st.since = c.since();
                            if let Some(l) = c.last() {
                                st.last_result = Some(l.detail.clone());
                                st.last_ok = Some(l.ok);
                                st.last_at = Some(l.at);
                            }
                        }
                        st
                    })
                    .collect(),
            })
            .collect()
    }

    // === the probe driver's side ===

    /// When the server's next probe is due; `None` when it is not checked.
    pub fn next_probe(&self, svc: usize, srv: usize) -> Option<Instant> {
        let c = self.server(svc, srv)?.checker.as_ref()?;
        Some(lock(c).next_probe())
    }

    /// Feed an active check result that finished at `now`.
    pub fn observe_check(&self, svc: usize, srv: usize, now: Instant, result: CheckResult) {
        let Some(slot) = self.server(svc, srv) else {
            return;
        };
        let Some(checker) = &slot.checker else {
            return;
        };
        let (t, confirmed) = {
            let mut c = lock(checker);
            let was_provisional = c.is_provisional();
            let detail = result.detail.clone();
            let t = c.observe(now, result);
            if let Some(t) = &t {
                slot.healthy.store(t.up, Ordering::Relaxed);
            }
            let confirmed = (was_provisional && t.is_none())
                .then(|| format!("{} {}", c.label(), if c.is_up() { "UP" } else { "DOWN" }))
                .map(|what| format!("{what}: initial state confirmed ({detail})"));
            (t, confirmed)
        };
        if let Some(line) = confirmed {
            // Not a change, so not worth an info line, but it tells an
            // operator (and the tests) that the first check has happened.
            let s = &self.services[svc];
            tracing::debug!(service = %s.name, server = %slot.name, "{line}");
        }
        if let Some(t) = t {
            self.publish(svc, srv, t);
        }
    }

    /// Resolves when a passive report moved the server's next probe earlier.
    pub(crate) async fn probe_moved(&self, svc: usize, srv: usize) {
        match self.server(svc, srv) {
            Some(s) => s.wake.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Log a transition (already stored in the slot) and update the service.
    fn publish(&self, svc: usize, srv: usize, t: Transition) {
        let s = &self.services[svc];
        let v = &s.servers[srv];
        if t.up {
            tracing::info!(service = %s.name, server = %v.name, "{}", t.reason);
        } else {
            tracing::warn!(service = %s.name, server = %v.name, "{}", t.reason);
        }
        self.server_changes.send_modify(|n| *n = n.wrapping_add(1));
        self.recompute(svc);
    }

    fn recompute(&self, svc: usize) {
        let s = &self.services[svc];
        let mut published = lock(&s.published);
        let up = s.listeners_ok.load(Ordering::Relaxed)
            && (0..s.servers.len()).any(|i| self.is_up(svc, i));
        if up == *published {
            return;
        }
        *published = up;
        s.up.store(up, Ordering::Relaxed);
        let why = if up {
            "a server is usable again".to_string()
        } else if !s.listeners_ok.load(Ordering::Relaxed) {
            "a listener failed".to_string()
        } else {
            "no usable server".to_string()
        };
        if up {
            tracing::info!(service = %s.name, "{} UP: {why}", s.name);
        } else {
            tracing::warn!(service = %s.name, "{} DOWN: {why}", s.name);
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// How long ago `at` was, for display; zero if in the future.
pub fn age(at: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use std::time::Duration;

    pub(crate) fn service(name: &str, n: usize, health: Option<HealthCheck>) -> ProxyService {
        ProxyService {
            name: name.into(),
            mode: ProxyMode::Http,
            bind: vec!["127.0.0.1:0".parse().unwrap()],
            bind_opts: vec![BindOpts::default()],
            hsts: None,
            balance: Balance::RoundRobin,
            servers: (0..n)
                .map(|i| Server {
                    name: format!("web{}", i + 1),
                    address: format!("127.0.0.1:{}", 8001 + i).parse().unwrap(),
                    weight: 1,
                    maxconn: 0,
                    send_proxy: None,
                    tls: None,
                })
                .collect(),
            health,
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                client: Duration::from_secs(50),
                server: Duration::from_secs(50),
                http_request: Duration::from_secs(10),
                keep_alive: Duration::from_secs(10),
                queue: Duration::from_secs(5),
            },
            limits: Limits {
                max_head_bytes: 16384,
                max_headers: 100,
            },
            retries: 3,
            maxconn: 0,
            queue_len: 100,
            forwardfor: ForwardFor {
                enabled: true,
                except: vec![],
            },
            io: IoDriver::Auto,
            workers: 1,
            dontlognull: true,
        }
    }

    fn check(initial_up: bool) -> HealthCheck {
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            initial_up,
            observe_connect_errors: true,
            observe_5xx: false,
            tls: Default::default(),
        }
    }

    fn fail() -> CheckResult {
        CheckResult::failure("connection refused")
    }
    fn ok() -> CheckResult {
        CheckResult::success("connected")
    }

    /// The l4 reconciler rewrites the nftables map on every server change,
    /// not only when a whole service goes up or down.
    #[test]
    fn server_changes_wake_subscribers_while_the_service_stays_up() {
        let b = HealthBoard::new(&[service("web", 2, Some(check(true)))]);
        let mut rx = b.subscribe_servers();
        rx.mark_unchanged();
        let now = Instant::now();
        for _ in 0..3 {
            b.observe_check(0, 0, now, fail());
        }
        assert!(!b.is_up(0, 0) && b.service_up(0));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        b.set_admin(0, 1, AdminState::Drain);
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn unchecked_servers_are_up_and_ignore_passive_reports() {
        let b = HealthBoard::new(&[service("web", 2, None)]);
        assert!(b.is_up(0, 0) && b.is_up(0, 1));
        assert!(b.service_up(0));
        for _ in 0..100 {
            b.report(0, 0, PassiveEvent::ConnectFailed);
        }
        assert!(b.is_up(0, 0));
        assert_eq!(b.next_probe(0, 0), None);
        let snap = b.snapshot();
        assert!(!snap[0].servers[0].checked);
    }

    #[test]
    fn out_of_range_indexes_are_down_and_harmless() {
        let b = HealthBoard::new(&[service("web", 1, Some(check(true)))]);
        assert!(!b.is_up(0, 1));
        assert!(!b.is_up(5, 0));
        assert!(!b.service_up(1));
        b.report(3, 3, PassiveEvent::ConnectFailed);
        b.set_admin(0, 9, AdminState::Disabled);
        b.set_listener_ok(9, false);
        b.observe_check(0, 9, Instant::now(), fail());
        assert_eq!(b.admin(0, 9), None);
        assert!(b.is_up(0, 0));
    }

    #[test]
    fn initial_state_follows_initial_up() {
        let b = HealthBoard::new(&[
            service("up", 1, Some(check(true))),
            service("down", 1, Some(check(false))),
        ]);
        assert!(b.is_up(0, 0) && b.service_up(0));
        assert!(!b.is_up(1, 0) && !b.service_up(1));
        assert_eq!(b.service_index("down"), Some(1));
        assert_eq!(b.service_index("nope"), None);
    }

    #[test]
    fn first_probes_are_spread_over_the_fast_interval() {
        let now = Instant::now();
        let b = HealthBoard::new_at(&[service("web", 4, Some(check(true)))], now);
        let offs: Vec<Duration> = (0..4).map(|i| b.next_probe(0, i).unwrap() - now).collect();
        assert_eq!(offs, [0, 125, 250, 375].map(Duration::from_millis).to_vec());
    }

    #[test]
    fn service_goes_down_with_its_last_server_and_subscribers_hear_it() {
        let b = HealthBoard::new(&[service("web", 2, Some(check(true)))]);
        let mut rx = b.subscribe();
        let v0 = *rx.borrow_and_update();
        let t = Instant::now();
        // Confirm both up, then fail server 0 (3 times) and server 1.
        b.observe_check(0, 0, t, ok());
        b.observe_check(0, 1, t, ok());
        for _ in 0..3 {
            b.observe_check(0, 0, t, fail());
        }
        assert!(!b.is_up(0, 0));
        assert!(b.service_up(0));
        assert!(!rx.has_changed().unwrap());
        for _ in 0..3 {
            b.observe_check(0, 1, t, fail());
        }
        assert!(!b.service_up(0));
        assert!(rx.has_changed().unwrap());
        let v1 = *rx.borrow_and_update();
        assert_ne!(v0, v1);
        // One server back (rise = 2): service up again, another bump.
        b.observe_check(0, 1, t, ok());
        assert!(!b.service_up(0));
        b.observe_check(0, 1, t, ok());
        assert!(b.service_up(0));
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn listener_failure_takes_the_service_down() {
        let b = HealthBoard::new(&[service("web", 1, None)]);
        let mut rx = b.subscribe();
        rx.borrow_and_update();
        b.set_listener_ok(0, false);
        assert!(!b.service_up(0));
        assert!(b.is_up(0, 0), "servers stay usable");
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        b.set_listener_ok(0, false);
        assert!(!rx.has_changed().unwrap(), "no bump without a change");
        b.set_listener_ok(0, true);
        assert!(b.service_up(0));
        assert!(!b.snapshot()[0].servers.is_empty());
    }

    #[test]
    fn admin_changes_reach_the_boards_a_reload_retired() {
        // Generation 1 serves web1..web3; generation 2 drops web1 (so
        // web2 moves to index 0); generation 3 keeps generation 2's servers.
        let g1 = HealthBoard::new(&[service("web", 3, None)]);
        let mut two = service("web", 3, None);
        two.servers.remove(0);
        let g2 = HealthBoard::new_after(std::slice::from_ref(&two), &g1);
        let rx1 = g1.subscribe_admin();
        let g3 = HealthBoard::new_after(&[two], &g2);
        // web2 (index 0 now) disabled on the current board: by name on
        // both older ones, which wake their workers.
        g3.set_admin(0, 0, AdminState::Disabled);
        assert_eq!(g2.admin(0, 0), Some(AdminState::Disabled));
        assert_eq!(g1.admin(0, 1), Some(AdminState::Disabled));
        assert!(!g1.is_up(0, 1) && g1.is_up(0, 0) && g1.is_up(0, 2));
        assert!(rx1.has_changed().unwrap());
        // A retired board nobody uses any more is not kept alive.
        drop(g2);
        let g4 = HealthBoard::new_after(&[service("web", 3, None)], &g3);
        assert_eq!(g4.retired.len(), 2, "g1 and g3");
        g4.set_admin(0, 2, AdminState::Drain);
        assert_eq!(g1.admin(0, 2), Some(AdminState::Drain));
        assert_eq!(g3.admin(0, 1), Some(AdminState::Drain));
        assert_eq!(
            g4.admin(0, 0),
            Some(AdminState::Enabled),
            "not carried here"
        );
    }

    #[test]
    fn admin_state_gates_is_up_but_not_health() {
        let b = HealthBoard::new(&[service("web", 2, Some(check(true)))]);
        b.set_admin(0, 0, AdminState::Drain);
        assert!(!b.is_up(0, 0));
        assert!(b.service_up(0));
        b.set_admin(0, 1, AdminState::Disabled);
        assert!(!b.service_up(0));
        let snap = b.snapshot();
        assert!(snap[0].servers[0].healthy && !snap[0].servers[0].usable);
        assert_eq!(snap[0].servers[1].admin, AdminState::Disabled);
        b.set_admin(0, 0, AdminState::Enabled);
        assert!(b.is_up(0, 0) && b.service_up(0));
    }

    #[test]
    fn passive_reports_take_a_server_down_and_wake_its_prober() {
        let now = Instant::now();
        let b = HealthBoard::new_at(&[service("web", 1, Some(check(true)))], now);
        b.observe_check(0, 0, now, ok());
        let before = b.next_probe(0, 0).unwrap();
        b.report_at(0, 0, PassiveEvent::Ok, now);
        b.report_at(0, 0, PassiveEvent::Status5xx, now); // not observed
        assert_eq!(b.next_probe(0, 0).unwrap(), before);
        b.report_at(0, 0, PassiveEvent::ConnectFailed, now);
        assert!(b.next_probe(0, 0).unwrap() < before);
        // The wake-up was stored: the prober's next wait returns at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), b.probe_moved(0, 0))
                .await
                .expect("woken");
        });
        b.report_at(0, 0, PassiveEvent::ConnectFailed, now);
        b.report_at(0, 0, PassiveEvent::ConnectFailed, now);
        assert!(!b.is_up(0, 0));
        let s = &b.snapshot()[0].servers[0];
        assert_eq!(
            s.last_result.as_deref(),
            Some("connect failed on client traffic")
        );
        assert_eq!(s.last_ok, Some(false));
        assert!(!b.service_up(0));
    }

    #[test]
    fn snapshot_reports_last_result_and_since() {
        let now = Instant::now();
        let b = HealthBoard::new_at(&[service("web", 1, Some(check(false)))], now);
        let s = &b.snapshot()[0];
        assert_eq!(s.servers[0].since, now);
        assert_eq!(s.servers[0].last_result, None);
        let t1 = now + Duration::from_secs(1);
        b.observe_check(0, 0, t1, ok());
        let s = &b.snapshot()[0];
        assert!(s.up);
        assert_eq!(s.servers[0].since, t1);
        assert_eq!(s.servers[0].last_result.as_deref(), Some("connected"));
        assert_eq!(s.servers[0].last_at, Some(t1));
        assert_eq!(age(now, t1), Duration::from_secs(1));
        assert_eq!(age(t1, now), Duration::ZERO);
    }

    #[test]
    fn a_reload_keeps_the_health_of_unchanged_servers() {
        // Regression (issue 12): every reload made a new board, so a DOWN
        // server was "UP" again (initial_up) until its first probe failed.
        let t = Instant::now();
        let svcs = [service("web", 3, Some(check(true)))];
        let b = HealthBoard::new_at(&svcs, t);
        for i in 0..3 {
            b.observe_check(0, i, t, ok());
        }
        for _ in 0..3 {
            b.observe_check(0, 1, t, fail());
        }
        b.observe_check(0, 2, t, fail()); // one failure of three: still up
        let before = b.snapshot();
        assert!(!before[0].servers[1].healthy);

        // Same servers, another weight: everything carries over.
        let mut same = svcs.clone();
        same[0].servers[0].weight = 5;
        let n = HealthBoard::new_after(&same, &b);
        assert_eq!(n.snapshot(), before);
        assert!(!n.is_up(0, 1) && n.is_up(0, 2) && n.service_up(0));
        assert_eq!(n.next_probe(0, 1), b.next_probe(0, 1));
        // The streak goes on: two more failures take web3 down.
        n.observe_check(0, 2, t, fail());
        n.observe_check(0, 2, t, fail());
        assert!(!n.is_up(0, 2));

        // A server that moved, or whose name is new, starts over.
        let mut moved = svcs.clone();
        moved[0].servers[1].address = "127.0.0.1:9999".parse().unwrap();
        moved[0].servers[2].name = "other".into();
        let n = HealthBoard::new_after(&moved, &b);
        let s = &n.snapshot()[0].servers;
        assert!(s[1].healthy && s[1].last_result.is_none());
        assert_eq!(s[2].streak, 0);
        assert!(s[0].last_result.is_some(), "web1 kept");

        // Another [health] table: every server of the service starts over.
        let mut rechecked = svcs.clone();
        rechecked[0].health.as_mut().unwrap().rise = 5;
        let n = HealthBoard::new_after(&rechecked, &b);
        assert!(n.is_up(0, 1));
        assert!(n.snapshot()[0]
            .servers
            .iter()
            .all(|s| s.last_result.is_none()));

        // A service whose servers are all down stays down.
        for _ in 0..3 {
            b.observe_check(0, 0, t, fail());
            b.observe_check(0, 2, t, fail());
        }
        assert!(!b.service_up(0));
        assert!(!HealthBoard::new_after(&svcs, &b).service_up(0));
    }

    #[test]
    fn board_is_shared_across_threads() {
        let b = HealthBoard::new(&[service("web", 3, Some(check(true)))]);
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        b.report(0, i, PassiveEvent::ConnectFailed);
                        let _ = b.is_up(0, i);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!b.service_up(0));
    }

    #[test]
    fn admin_states_keep_their_words_in_json_labels_and_columns() {
        // `/status.json`, the control socket and `/metrics` said these
        // strings when the field was a String; scripts read them.
        for (st, word) in AdminState::ALL
            .into_iter()
            .zip(["enabled", "drain", "disabled"])
        {
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<AdminState>(&format!("\"{word}\"")).unwrap(),
                st
            );
            assert_eq!(st.as_str(), word);
            assert_eq!(format!("{st:<9}|"), format!("{word:<9}|"));
            assert_eq!(AdminState::from_u8(st.to_u8()), st);
        }
        assert!(serde_json::from_str::<AdminState>("\"Enabled\"").is_err());
    }
}
