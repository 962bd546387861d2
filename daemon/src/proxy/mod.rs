//! HTTP/1.1 reverse proxy, and a TCP relay for `mode = "tcp"` (`tcp`).
//!
//! Pure parts: the HTTP/1 codec in [`crate::http1`] (framing, smuggling
//! rules, head rewriting) and
//! [`balance`] (server selection). Everything else drives them: `start`
//! binds every listener up front (so a bad address is an error at start,
//! naming the address), probes io_uring, then runs `workers` threads per
//! service, each with its own current-thread runtime (tokio-uring or plain
//! tokio) and its own SO_REUSEPORT listeners. The connection logic in
//! `conn.rs` is one piece of async code for both drivers.
//!
//! Not here: health checking (`health`), configuration parsing (`config`).

pub mod balance;
// Drivers: they read the clock (clippy.toml).
#[allow(clippy::disallowed_methods)]
mod conn;
mod error;
// Driver: it reads the clock for idleness (clippy.toml).
#[allow(clippy::disallowed_methods)]
mod http2;
mod listen;
pub mod proxy_protocol;
// Driver: it reads the clock for its timeouts and access log (clippy.toml).
#[allow(clippy::disallowed_methods)]
mod redirect;
mod rules;
pub(crate) mod stream;
#[allow(clippy::disallowed_methods)]
mod tcp;
pub(crate) mod tls;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::watch;

use crate::config::{IoDriver, ProxyMode, ProxyService};
use crate::health::HealthBoard;
use conn::{Shared, Worker};
use stream::{Epoll, Io, Stream, Uring};

/// The running proxy: its worker threads.
pub struct ProxyRuntime {
    stop: watch::Sender<Stop>,
    /// Each service's shared state, for `drain`.
    shared: Vec<Arc<Shared>>,
    /// Per service: hands a new generation to its running workers.
    gens: Vec<watch::Sender<Arc<Shared>>>,
    /// What the workers were started for (binds, workers, io).
    services: Vec<ProxyService>,
    /// A copy of every listening socket by (address, worker), for the next
    /// generation to share.
    listeners: std::collections::HashMap<(std::net::SocketAddr, usize), std::net::TcpListener>,
    threads: Vec<JoinHandle<()>>,
    driver: &'static str,
}

impl ProxyRuntime {
    /// Stop accepting, drop every connection and join the workers.
    pub fn shutdown(self) {
        let _ = self.stop.send(Stop::Now);
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Apply a reload to the running workers when only what they serve
    /// changed (servers, weights, health, timeouts, limits, ...), not how
    /// they listen (service names and order, `bind`, `workers`, `io`). The
    /// listeners are untouched, so no connection can be lost in an accept
    /// queue; connections of the old generation finish their request in
    /// flight and close. Returns false (and changes nothing) otherwise.
    pub fn reconfigure(
        &mut self,
        services: &[ProxyService],
        board: Arc<HealthBoard>,
        stats: Arc<crate::telemetry::stats::ProxyStats>,
    ) -> bool {
        let same_shape = services.len() == self.services.len()
            && services.iter().zip(&self.services).all(|(a, b)| {
                a.name == b.name && a.bind == b.bind && a.workers == b.workers && a.io == b.io
            });
        if !same_shape {
            return false;
        }
        for (idx, svc) in services.iter().enumerate() {
            let shared = Arc::new(Shared::new(
                idx,
                svc.clone(),
                board.clone(),
                stats.service(idx),
            ));
            self.shared[idx].draining.store(true, Ordering::Relaxed);
            self.shared[idx] = shared.clone();
            let _ = self.gens[idx].send(shared);
        }
        self.services = services.to_vec();
        true
    }

    /// For a reload: close the listeners now (a new generation is already
    /// listening beside them through SO_REUSEPORT), let every request in
    /// flight finish for up to `grace`, answering it with
    /// `Connection: close`, then stop. An idle keep-alive connection is
    /// not cut (its client may be sending the next request right now): it
    /// ends after its next response, which says `Connection: close`, or
    /// at its keep_alive timeout.
    // Waits on the clock: a driver (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    pub fn drain(self, grace: Duration) {
        self.retire();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline
            && self
                .shared
                .iter()
                .any(|s| s.conns.load(Ordering::Relaxed) > 0)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shutdown();
    }

    /// The first step of [`ProxyRuntime::drain`]: close the listeners
    /// (after each one's pending accept) and answer every further request
    /// with `Connection: close`.
    pub fn retire(&self) {
        for s in &self.shared {
            s.draining.store(true, Ordering::Relaxed);
        }
        let _ = self.stop.send(Stop::Drain);
    }

    /// The driver of the first service: "io_uring" or "epoll".
    pub fn driver(&self) -> &'static str {
        self.driver
    }
}

/// Can this process use io_uring? Creating a ring and completing a no-op
/// catches ENOSYS (qemu-user, old kernels), EPERM (seccomp, Docker's default
/// profile) and `kernel.io_uring_disabled`.
pub fn probe_uring() -> Result<(), String> {
    let t = std::thread::Builder::new()
        .name("halo-uring-probe".into())
        .spawn(|| {
            let rt = uring_runtime().map_err(|e| e.to_string())?;
            rt.block_on(tokio_uring::no_op()).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?;
    t.join()
        .map_err(|_| "io_uring probe panicked".to_string())?
}

/// A worker's io_uring runtime. The ring is made with COOP_TASKRUN (Linux
/// 5.19): a completion raised on another core (the peer's send delivered in
/// its softirq) is run at this thread's next entry into the kernel instead
/// of interrupting it with an IPI, an exit to the hypervisor on a VM; the
/// thread enters the kernel every loop turn anyway (epoll_wait,
/// io_uring_enter), and one that sleeps is still woken. SINGLE_ISSUER
/// (6.0): only this thread submits, so the kernel skips the submission
/// lock's sharing. DEFER_TASKRUN is not used: tokio-uring reaps the
/// completion queue without asking the kernel for events, which that mode
/// needs. An older kernel refuses the flags (EINVAL): a plain ring then.
pub(crate) fn uring_runtime() -> std::io::Result<tokio_uring::Runtime> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    match tokio_uring::Runtime::new(tokio_uring::builder().uring_builder(&ring)) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            RING_IS_OLD.store(true, Ordering::Relaxed);
            tokio_uring::Runtime::new(&tokio_uring::builder())
        }
        r => r,
    }
}

/// Set when the kernel refused the ring's flags (before Linux 6.0): then
/// it may lack later io_uring features too (`Uring::accepts`).
static RING_IS_OLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the rings were made with their flags (Linux 6.0 or later).
/// Asked after `uring_runtime` made this thread's.
pub(crate) fn ring_is_modern() -> bool {
    !RING_IS_OLD.load(Ordering::Relaxed)
}

/// Pick the driver for `io`, probing io_uring at most once per `start`.
fn resolve_driver(
    io: IoDriver,
    probe: &mut Option<Result<(), String>>,
) -> anyhow::Result<&'static str> {
    if io == IoDriver::Epoll {
        return Ok(Epoll::NAME);
    }
    match (io, probe.get_or_insert_with(probe_uring)) {
        (_, Ok(())) => Ok(Uring::NAME),
        (IoDriver::Uring, Err(e)) => {
            Err(anyhow!("io = \"uring\" but io_uring is unavailable: {e}"))
        }
        (_, Err(e)) => {
            tracing::warn!("io_uring unavailable ({e}); using the epoll driver");
            Ok(Epoll::NAME)
        }
    }
}

/// Bind every service's listeners and start its worker threads.
pub fn start(services: &[ProxyService], board: Arc<HealthBoard>) -> anyhow::Result<ProxyRuntime> {
    start_with_stats(
        services,
        board,
        crate::telemetry::stats::ProxyStats::new(services, None),
    )
}

/// [`start`], counting traffic into `stats` (made for `services`).
pub fn start_with_stats(
    services: &[ProxyService],
    board: Arc<HealthBoard>,
    stats: Arc<crate::telemetry::stats::ProxyStats>,
) -> anyhow::Result<ProxyRuntime> {
    start_generation(services, board, stats, None)
}

/// A new generation for a reload: every listening socket of `previous`
/// whose address is still bound is shared (a dup of the same socket), so
/// no connection waiting in an accept queue is lost when the previous
/// generation closes its copies; only new addresses are bound anew.
pub fn start_generation(
    services: &[ProxyService],
    board: Arc<HealthBoard>,
    stats: Arc<crate::telemetry::stats::ProxyStats>,
    previous: Option<&ProxyRuntime>,
) -> anyhow::Result<ProxyRuntime> {
    let mut kept = std::collections::HashMap::new();
    let mut gens = Vec::new();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let mut all_shared = Vec::new();
    let mut threads = Vec::new();
    let mut first_driver = None;
    let mut probe = None;
    let mut result = Ok(());
    for (idx, svc) in services.iter().enumerate() {
        let driver = match resolve_driver(svc.io, &mut probe) {
            Ok(d) => d,
            Err(e) => {
                result = Err(e.context(format!("proxy service {}", svc.name)));
                break;
            }
        };
        first_driver.get_or_insert(driver);
        let workers = svc.workers.max(1);
        let shared = Arc::new(Shared::new(
            idx,
            svc.clone(),
            board.clone(),
            stats.service(idx),
        ));
        all_shared.push(shared.clone());
        // Bind everything first, so a failure leaves nothing half-running.
        let mut sets = Vec::new();
        for wi in 0..workers {
            let mut ls = Vec::new();
            for addr in &svc.bind {
                let inherited = previous
                    .and_then(|p| p.listeners.get(&(*addr, wi)))
                    .and_then(|l| l.try_clone().ok());
                let bound = match inherited {
                    Some(l) => Ok(l),
                    None => listen::bind(*addr),
                };
                match bound.and_then(|l| Ok((l.try_clone()?, l))) {
                    Ok((keep, l)) => {
                        kept.insert((*addr, wi), keep);
                        ls.push(l)
                    }
                    Err(e) => {
                        result = Err(anyhow!(
                            "proxy service {}: cannot listen on {addr}: {e}",
                            svc.name
                        ));
                        break;
                    }
                }
            }
            sets.push(ls);
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            break;
        }
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (gen_tx, gen_rx) = watch::channel(shared.clone());
        gens.push(gen_tx);
        for (wi, ls) in sets.into_iter().enumerate() {
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let gen_rx = gen_rx.clone();
            let ready_tx = ready_tx.clone();
            // The watchdog pings only while this worker's runtime runs.
            let part = format!("proxy {} worker {wi}", svc.name);
            let t = std::thread::Builder::new()
                .name(format!("halo-{}-{wi}", svc.name))
                .spawn(move || {
                    crate::run::priority::normal();
                    if driver == Uring::NAME {
                        match uring_runtime() {
                            Ok(rt) => {
                                let _ = ready_tx.send(Ok(()));
                                // The start loop reads until every sender is gone.
                                drop(ready_tx);
                                rt.block_on(crate::run::liveness::with_heartbeat(
                                    part,
                                    run_worker::<Uring>(shared, ls, stop_rx, gen_rx),
                                ));
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(format!("io_uring runtime: {e}")));
                            }
                        }
                    } else {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build();
                        match rt {
                            Ok(rt) => {
                                let _ = ready_tx.send(Ok(()));
                                drop(ready_tx);
                                let local = tokio::task::LocalSet::new();
                                local.block_on(
                                    &rt,
                                    crate::run::liveness::with_heartbeat(
                                        part,
                                        run_worker::<Epoll>(shared, ls, stop_rx, gen_rx),
                                    ),
                                );
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                            }
                        }
                    }
                })
                .with_context(|| format!("proxy service {}: spawning a worker", svc.name));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        for r in ready_rx.iter() {
            if let Err(e) = r {
                result = Err(anyhow!("proxy service {}: {e}", svc.name));
            }
        }
        if result.is_err() {
            break;
        }
        tracing::info!(
            service = %svc.name,
            "proxy {} listening on {:?} ({} worker(s), {driver})",
            svc.name,
            svc.bind,
            workers
        );
    }
    let rt = ProxyRuntime {
        stop,
        gens,
        services: services.to_vec(),
        listeners: kept,
        shared: all_shared,
        threads,
        driver: first_driver.unwrap_or(Epoll::NAME),
    };
    match result {
        Ok(()) => Ok(rt),
        Err(e) => {
            rt.shutdown();
            Err(e)
        }
    }
}

/// One worker thread: accept on each listener, serve each connection as a
/// local task, prune the server pool, stop when told.
async fn run_worker<I: Io>(
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    mut stop: watch::Receiver<Stop>,
    mut gens: watch::Receiver<Arc<Shared>>,
) {
    // The worker new connections go to; a reload swaps it (see
    // `ProxyRuntime::reconfigure`) while the listeners stay as they are.
    let current: Current<I> = Rc::new(RefCell::new(Rc::new(Worker::new(shared.clone()))));
    // Set at `Stop::Drain`: each accept loop ends (its pending accept
    // cancelled, `Io::cancel_accepts`, or served).
    let stopping = Rc::new(std::cell::Cell::new(false));
    // Accepts in flight on this worker's listeners: counted against the
    // service's maxconn with its open connections (see `accept_loop`).
    let accepting = Rc::new(std::cell::Cell::new(0u32));
    let mut accepts = Vec::new();
    // Each accept loop's listener, for the drain to cancel its accept.
    let mut listening_on = Vec::new();
    for (bind, l) in listeners.into_iter().enumerate() {
        let addr = l.local_addr().ok();
        // `I::accepts()` loops per listener, each on its own descriptor of
        // the one socket (a dup does not fail but for want of descriptors;
        // then fewer loops).
        let mut copies: Vec<_> = (1..I::accepts())
            .filter_map(|_| l.try_clone().ok())
            .collect();
        copies.push(l);
        for l in copies {
            match I::listener(l) {
                Ok(l) => {
                    let l = Rc::new(l);
                    listening_on.push(l.clone());
                    accepts.push(tokio::task::spawn_local(accept_loop(
                        current.clone(),
                        l,
                        bind,
                        stopping.clone(),
                        accepting.clone(),
                    )))
                }
                Err(e) => {
                    tracing::error!(service = %shared.svc.name, "listener {addr:?}: {e}");
                    shared.board.set_listener_ok(shared.idx, false);
                }
            }
        }
    }
    // Workers a reload retired whose connections are still open: admin
    // changes apply to their connections too (their board hears of them
    // through the current one, `HealthBoard::set_admin`).
    let retired: Rc<RefCell<Vec<std::rc::Weak<Worker<I>>>>> = Rc::default();
    let pw = current.clone();
    let pr = retired.clone();
    let prune = tokio::task::spawn_local(async move {
        loop {
            // Every second, and at once when a server is drained or
            // disabled (`halo server ...`): that closes its connections.
            let mut admin = pw.borrow().shared.board.subscribe_admin();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = admin.changed() => {}
            }
            let w = pw.borrow().clone();
            w.apply_admin();
            // The worker's clock (clippy.toml), read once per round.
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            w.prune_pool(now);
            pr.borrow_mut().retain(|old| {
                let Some(old) = old.upgrade() else {
                    return false;
                };
                old.apply_admin();
                old.prune_pool(now);
                true
            });
        }
    });
    let mut listening = true;
    loop {
        let now = *stop.borrow_and_update();
        if now == Stop::Now {
            break;
        }
        if now == Stop::Drain && listening {
            // The accept loops are not aborted: tokio-uring does not cancel
            // a dropped accept, which then still takes a connection from the
            // queue these sockets share with the next generation, and nobody
            // serves it. Their accepts are cancelled instead
            // (`Io::cancel_accepts`) and each loop ends; one whose accept
            // had already taken a connection serves it (once, `Connection:
            // close`). Connection tasks go on until `Stop::Now`.
            stopping.set(true);
            listening = false;
            for l in listening_on.drain(..) {
                I::cancel_accepts(&l).await;
            }
        }
        tokio::select! {
            r = stop.changed() => if r.is_err() { break },
            r = gens.changed() => {
                if r.is_err() {
                    continue;
                }
                let next = gens.borrow_and_update().clone();
                // Connections of the old generation keep their worker
                // (and its pool) until they end; they close after the
                // request in flight.
                let old = current.replace(Rc::new(Worker::new(next)));
                old.shared.draining.store(true, Ordering::Relaxed);
                retired.borrow_mut().push(Rc::downgrade(&old));
            }
        }
    }
    for t in accepts {
        t.abort();
    }
    prune.abort();
}

/// What the workers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// Stop accepting (after each listener's pending accept), keep
    /// serving open connections.
    Drain,
    /// Drop everything and return.
    Now,
}

/// The worker of the current generation, shared by a thread's tasks.
type Current<I> = Rc<RefCell<Rc<Worker<I>>>>;

/// Accept on the listener of `svc.bind[bind]`; what it speaks (TLS and its
/// certificates, a redirect) comes from the generation current at accept,
/// so a reload changes certificates for new connections only.
async fn accept_loop<I: Io>(
    current: Current<I>,
    l: Rc<I::Listener>,
    bind: usize,
    stopping: Rc<std::cell::Cell<bool>>,
    accepting: Rc<std::cell::Cell<u32>>,
) {
    let mut failing = false;
    // Boxes of connections that ended, for the next ones (see `Recycle`).
    let spares = Rc::new(RefCell::new(Vec::new()));
    loop {
        if stopping.get() {
            return; // dropping `l` closes this worker's copy of the socket
        }
        let w = current.borrow().clone();
        let shared = w.shared.clone();
        let maxconn = shared.svc.maxconn;
        // An accept in flight counts as the connection it will be: with
        // several in flight (`Io::accepts`) they could otherwise each take
        // the service's last free place.
        let taken = |shared: &Shared| shared.conns.load(Ordering::Relaxed) + accepting.get();
        if maxconn != 0 && taken(&shared) >= maxconn {
            // Service maxconn: leave further clients in the kernel backlog.
            // (Below it, as nearly always, no waiter is made: making,
            // enabling and dropping one locked the Notify twice per
            // connection.)
            loop {
                let freed = shared.conn_freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if taken(&shared) < maxconn {
                    break;
                }
                freed.await;
            }
            if stopping.get() {
                return;
            }
        }
        accepting.set(accepting.get() + 1);
        let accepted = I::accept(&l).await;
        accepting.set(accepting.get() - 1);
        match accepted {
            Ok((s, peer)) => {
                if failing {
                    failing = false;
                    shared.board.set_listener_ok(shared.idx, true);
                }
                // A reload may have swapped the generation while we waited.
                let w = current.borrow().clone();
                let shared = &w.shared;
                shared.conns.fetch_add(1, Ordering::Relaxed);
                shared.stats.conn_open();
                let opts = shared.svc.bind_opts.get(bind).cloned().unwrap_or_default();
                // Boxed: a connection's state machine is kilobytes, and
                // tokio moves a task's future by value (into the task, and
                // again at each change of its stage): callgrind counted six
                // copies, 28,000 instructions per connection. A box moves
                // as a pointer. The box of a connection that ended serves
                // the next one (`Recycle`).
                let conn = async move {
                    let guard = ConnGuard(w.shared.clone());
                    let s = match &opts.tls {
                        None => s,
                        Some(tls) => match handshake::<I>(&w.shared, s, peer, tls).await {
                            Some(s) => s,
                            None => return,
                        },
                    };
                    match w.shared.svc.mode {
                        ProxyMode::Http if opts.redirect_https => redirect::serve(w, s, peer).await,
                        ProxyMode::Http if s.is_h2() => http2::serve(w, s, peer).await,
                        ProxyMode::Http => conn::serve(w, s, peer).await,
                        ProxyMode::Tcp => tcp::serve(w, s, peer).await,
                    }
                    drop(guard);
                };
                tokio::task::spawn_local(Recycle::new(&spares, conn));
            }
            Err(_) if stopping.get() => return, // cancelled by the drain
            Err(e) => {
                // Out of descriptors or memory: back off; the listener is
                // still fine. Anything else means the listener is broken.
                let transient = matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EMFILE
                            | libc::ENFILE
                            | libc::ENOBUFS
                            | libc::ENOMEM
                            | libc::ECONNABORTED
                            | libc::EINTR
                    )
                );
                if !transient && !failing {
                    tracing::error!(service = %shared.svc.name, "accept: {e}");
                    failing = true;
                    shared.board.set_listener_ok(shared.idx, false);
                }
                tokio::time::sleep(Duration::from_millis(if transient { 50 } else { 1000 })).await;
            }
        }
    }
}

/// The server side of a TLS handshake, bounded by `timeouts.http_request`
/// (a client that opens connections and sends nothing holds no more than
/// a slowloris would). A failure is the client's: logged at debug only,
/// since scanners and clients with no common version or cipher are common.
async fn handshake<I: Io>(
    shared: &Shared,
    s: I::Stream,
    peer: std::net::SocketAddr,
    tls: &crate::tls::ServerTls,
) -> Option<I::Stream> {
    let limit = shared.svc.timeouts.http_request;
    let r = tokio::time::timeout(limit, I::accept_tls(s, tls.config.clone())).await;
    match r {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, service = %shared.svc.name, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(client = %peer, service = %shared.svc.name, "TLS handshake timed out");
            None
        }
    }
}

/// A connection's task: its state machine in a box that goes back to the
/// accept loop's spares when the connection ends, emptied in place
/// (`Pin::set`), for the next connection to be written into. The state
/// machine is some 5 KiB, past the size glibc's per-thread cache serves,
/// and a new box per connection went through malloc's and free's slow
/// paths: about 480 instructions per connection (callgrind, malloc.c
/// alone). At most `SPARE_CONNS` are kept per accept loop.
struct Recycle<F: Future<Output = ()>> {
    slot: Option<Pin<Box<Option<F>>>>,
    spares: Spares<F>,
}

/// An accept loop's boxes of connections that ended.
type Spares<F> = Rc<RefCell<Vec<Pin<Box<Option<F>>>>>>;

impl<F: Future<Output = ()>> Recycle<F> {
    /// `conn` in a spare box, or a new one.
    fn new(spares: &Spares<F>, conn: F) -> Self {
        let slot = match spares.borrow_mut().pop() {
            Some(mut slot) => {
                slot.as_mut().set(Some(conn));
                slot
            }
            None => Box::pin(Some(conn)),
        };
        Recycle {
            slot: Some(slot),
            spares: spares.clone(),
        }
    }
}

/// Boxes kept per accept loop (see `Recycle`).
const SPARE_CONNS: usize = 64;

impl<F: Future<Output = ()>> Future for Recycle<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(slot) = this.slot.as_mut() else {
            return Poll::Ready(());
        };
        if let Some(conn) = slot.as_mut().as_pin_mut() {
            if conn.poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // Ended: its state is dropped here, not at the next connection.
        slot.as_mut().set(None);
        if let Some(slot) = this.slot.take() {
            let mut spares = this.spares.borrow_mut();
            if spares.len() < SPARE_CONNS {
                spares.push(slot);
            }
        }
        Poll::Ready(())
    }
}

struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let was = self.0.conns.fetch_sub(1, Ordering::Relaxed);
        self.0.stats.conn_close();
        // An accept loop waits only once it saw `conns >= maxconn` (after
        // enabling its waiter), so only a close from there can free it;
        // below maxconn nobody waits, and notify_waiters takes a lock.
        let maxconn = self.0.svc.maxconn;
        if maxconn != 0 && was >= maxconn {
            self.0.conn_freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(bind: &str, io: &str) -> Vec<ProxyService> {
        let text = format!(
            "[proxy.web]\nbind = [\"{bind}\"]\nio = \"{io}\"\nworkers = 2\nservers = [{{ name = \"a\", address = \"127.0.0.1:9\" }}]\n"
        );
        crate::config::parse_str("t.toml", &text)
            .expect("valid config")
            .proxy
    }

    #[test]
    fn bind_failure_names_the_address() {
        // A plain listener without SO_REUSEPORT makes the port unavailable.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let svcs = services(&addr.to_string(), "epoll");
        let board = HealthBoard::new(&svcs);
        let err = start(&svcs, board)
            .err()
            .expect("bind must fail")
            .to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("web"), "{err}");
    }

    #[test]
    fn starts_and_stops_on_each_driver() {
        for io in ["epoll", "auto"] {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let svcs = services(&format!("127.0.0.1:{port}"), io);
            let board = HealthBoard::new(&svcs);
            let rt = start(&svcs, board).expect("start");
            assert!(["epoll", "io_uring"].contains(&rt.driver()));
            if io == "epoll" {
                assert_eq!(rt.driver(), "epoll");
            }
            rt.shutdown();
        }
    }

    #[test]
    fn freebind_allows_an_address_not_on_this_host() {
        // 192.0.2.0/24 is TEST-NET-1: never configured here, like a VIP a
        // backup does not hold yet. Nothing is sent to it.
        let l = listen::bind("192.0.2.123:8080".parse().unwrap());
        assert!(l.is_ok(), "{:?}", l.err());
    }
}
