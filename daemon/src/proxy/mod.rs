//! HTTP/1.1 reverse proxy.
//!
//! Pure parts: [`http`] (framing, smuggling rules, head rewriting) and
//! [`balance`] (server selection). Everything else drives them: `start`
//! binds every listener up front (so a bad address is an error at start,
//! naming the address), probes io_uring, then runs `workers` threads per
//! service, each with its own current-thread runtime (tokio-uring or plain
//! tokio) and its own SO_REUSEPORT listeners. The connection logic in
//! `conn.rs` is one piece of async code for both drivers.
//!
//! Not here: health checking (`health`), configuration parsing (`config`).

pub mod balance;
mod conn;
pub mod http;
mod listen;
mod stream;

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::watch;

use crate::config::{IoDriver, ProxyService};
use crate::health::HealthBoard;
use conn::{Shared, Worker};
use stream::{Epoll, Io, Uring};

/// The running proxy: its worker threads.
pub struct ProxyRuntime {
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    driver: &'static str,
}

impl ProxyRuntime {
    /// Stop accepting, drop every connection and join the workers.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.threads {
            let _ = t.join();
        }
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
            let rt =
                tokio_uring::Runtime::new(&tokio_uring::builder()).map_err(|e| e.to_string())?;
            rt.block_on(tokio_uring::no_op()).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?;
    t.join()
        .map_err(|_| "io_uring probe panicked".to_string())?
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
        crate::stats::ProxyStats::new(services, None),
    )
}

/// [`start`], counting traffic into `stats` (made for `services`).
pub fn start_with_stats(
    services: &[ProxyService],
    board: Arc<HealthBoard>,
    stats: Arc<crate::stats::ProxyStats>,
) -> anyhow::Result<ProxyRuntime> {
    let (stop, stop_rx) = watch::channel(false);
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
        // Bind everything first, so a failure leaves nothing half-running.
        let mut sets = Vec::new();
        for _ in 0..workers {
            let mut ls = Vec::new();
            for addr in &svc.bind {
                match listen::bind(*addr) {
                    Ok(l) => ls.push(l),
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
        for (wi, ls) in sets.into_iter().enumerate() {
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let ready_tx = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("halo-{}-{wi}", svc.name))
                .spawn(move || {
                    if driver == Uring::NAME {
                        match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                            Ok(rt) => {
                                let _ = ready_tx.send(Ok(()));
                                // The start loop reads until every sender is gone.
                                drop(ready_tx);
                                rt.block_on(run_worker::<Uring>(shared, ls, stop_rx));
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
                                local.block_on(&rt, run_worker::<Epoll>(shared, ls, stop_rx));
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
    mut stop: watch::Receiver<bool>,
) {
    let w: Rc<Worker<I>> = Rc::new(Worker::new(shared.clone()));
    let mut tasks = Vec::new();
    for l in listeners {
        let addr = l.local_addr().ok();
        match I::listener(l) {
            Ok(l) => tasks.push(tokio::task::spawn_local(accept_loop(w.clone(), l))),
            Err(e) => {
                tracing::error!(service = %shared.svc.name, "listener {addr:?}: {e}");
                shared.board.set_listener_ok(shared.idx, false);
            }
        }
    }
    let pw = w.clone();
    tasks.push(tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            pw.prune_pool(Instant::now());
        }
    }));
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
}

async fn accept_loop<I: Io>(w: Rc<Worker<I>>, l: I::Listener) {
    let shared = w.shared.clone();
    let maxconn = shared.svc.maxconn;
    let mut failing = false;
    loop {
        if maxconn != 0 {
            // Service maxconn: leave further clients in the kernel backlog.
            loop {
                let freed = shared.conn_freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if shared.conns.load(Ordering::Relaxed) < maxconn {
                    break;
                }
                freed.await;
            }
        }
        match I::accept(&l).await {
            Ok((s, peer)) => {
                if failing {
                    failing = false;
                    shared.board.set_listener_ok(shared.idx, true);
                }
                shared.conns.fetch_add(1, Ordering::Relaxed);
                shared.stats.conn_open();
                let w = w.clone();
                tokio::task::spawn_local(async move {
                    let guard = ConnGuard(w.shared.clone());
                    conn::serve(w, s, peer).await;
                    drop(guard);
                });
            }
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

struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
        self.0.stats.conn_close();
        self.0.conn_freed.notify_waiters();
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
