//! Active and passive health checks of proxy servers.
//!
//! - `checker`: the pure rise/fall state machine of one server.
//! - `response`: pure reading of an HTTP response (framing, body digest).
//! - `probe`: the I/O of one HTTP or TCP check.
//! - `board`: [`HealthBoard`], the shared state the proxy and VRRP read.
//! - `genhash`: `halo genhash URL`.
//!
//! This module is the driver: [`spawn`] runs every configured probe on one
//! dedicated thread with its own current-thread tokio runtime, reading the
//! clock and feeding results into the board. Checks are cheap and few (one
//! per server every couple of seconds), so one thread keeps them off the
//! proxy's workers without costing a core.

pub mod board;
pub mod checker;
pub mod genhash;
pub mod probe;
pub mod response;
// A driver: it reads the clock (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod track_script;

pub use board::{AdminState, HealthBoard, ServerStatus, ServiceStatus};
pub use checker::{CheckResult, PassiveEvent, Transition};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::{CheckKind, ProxyService};

/// The running probes; dropping it stops them too.
#[derive(Debug)]
pub struct HealthRuntime {
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthRuntime {
    /// Stop every probe (in-flight ones are abandoned) and wait for the
    /// thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("health check thread panicked");
            }
        }
    }
}

impl Drop for HealthRuntime {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One server to probe.
struct Target {
    svc: usize,
    srv: usize,
    addr: SocketAddr,
    kind: CheckKind,
    /// TLS for this server's checks (`HealthTls::for_server`).
    tls: Option<Arc<crate::tls::client::ClientTls>>,
    timeout: Duration,
}

/// Start probing every server of every service that has a `[health]`
/// table. `services` must be the slice `board` was built from.
pub fn spawn(services: &[ProxyService], board: Arc<HealthBoard>) -> anyhow::Result<HealthRuntime> {
    if board.service_count() != services.len() {
        anyhow::bail!(
            "health board has {} services but {} were given",
            board.service_count(),
            services.len()
        );
    }
    let mut targets = Vec::new();
    for (svc, s) in services.iter().enumerate() {
        let Some(hc) = &s.health else { continue };
        for (srv, server) in s.servers.iter().enumerate() {
            targets.push(Target {
                svc,
                srv,
                addr: server.address,
                kind: hc.kind.clone(),
                tls: hc.tls.for_server(server.tls.as_ref()),
                timeout: hc.timeout,
            });
        }
    }
    // Built here so that a failure is reported to the caller, not lost in
    // the thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the health check runtime")?;
    let (stop, stop_rx) = watch::channel(false);
    let n = targets.len();
    let thread = std::thread::Builder::new()
        .name("halo-health".into())
        .spawn(move || {
            crate::run::priority::normal();
            // Local tasks: a TLS probe's stream is not Send (the proxy's
            // single-threaded TLS stream). The watchdog pings only while
            // this thread's runtime runs.
            let local = tokio::task::LocalSet::new();
            rt.block_on(local.run_until(crate::run::liveness::with_heartbeat(
                "health checker",
                async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for t in targets {
                        tasks.spawn_local(probe_loop(t, board.clone(), stop_rx.clone()));
                    }
                    while tasks.join_next().await.is_some() {}
                },
            )));
        })
        .context("starting the health check thread")?;
    tracing::debug!(servers = n, "health checks started");
    Ok(HealthRuntime {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Probe one server forever: sleep until the checker says a probe is due
/// (or a passive failure moves that earlier), probe, report.
async fn probe_loop(t: Target, board: Arc<HealthBoard>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(due) = board.next_probe(t.svc, t.srv) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = board.probe_moved(t.svc, t.srv) => continue,
            _ = stop.changed() => return,
        }
        let result = tokio::select! {
            r = probe::run_check(t.addr, t.tls.as_ref(), &t.kind, t.timeout) => r,
            _ = stop.changed() => return,
        };
        tracing::trace!(svc = t.svc, srv = t.srv, ok = result.ok, detail = %result.detail, "check");
        // The probe loop is the checker's driver: it reads the clock
        // (clippy.toml).
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        board.observe_check(t.svc, t.srv, now, result);
    }
}
