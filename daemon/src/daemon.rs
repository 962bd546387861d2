//! `halo run`: wires the pieces together and owns the process lifecycle
//! (signals, systemd notification, orderly shutdown).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::health::{self, HealthBoard};
use crate::netlink::{self, Netlink};
use crate::proxy;
use crate::sdnotify;
use crate::vrrp::driver::{self, Control, ProxyTracking};

pub fn run(cfg: Config, config_path: &Path) -> Result<()> {
    if !cfg.vrrp.is_empty() {
        let missing = crate::vrrp::sockets::missing_capabilities();
        if !missing.is_empty() {
            bail!(
                "VRRP needs {} (run as root, or give the binary the capabilities: setcap cap_net_raw,cap_net_admin+ep)",
                missing.join(" and ")
            );
        }
    }
    let board = HealthBoard::new(&cfg.proxy);
    let health_rt = health::spawn(&cfg.proxy, board.clone()).context("starting health checks")?;
    let proxy_rt = if cfg.proxy.is_empty() {
        None
    } else {
        Some(proxy::start(&cfg.proxy, board.clone()).context("starting the proxy")?)
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the VRRP runtime")?;
    let result = rt.block_on(supervise(&cfg, config_path, board, proxy_rt.as_ref().map(|p| p.driver())));
    if let Some(p) = proxy_rt {
        p.shutdown();
    }
    health_rt.shutdown();
    result
}

async fn supervise(
    cfg: &Config,
    config_path: &Path,
    board: Arc<HealthBoard>,
    proxy_driver: Option<&'static str>,
) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let tracking = ProxyTracking {
        board,
        index: cfg
            .proxy
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect::<HashMap<_, _>>(),
    };

    let mut controls = Vec::new();
    let mut tasks = Vec::new();
    if !cfg.vrrp.is_empty() {
        let nl = Netlink::connect()?;
        let mut link_events = netlink::watch_links()?;
        let mut fanout: Vec<mpsc::UnboundedSender<netlink::LinkEvent>> = Vec::new();
        let mut readies = Vec::new();
        for inst in &cfg.vrrp {
            let (ltx, lrx) = mpsc::unbounded_channel();
            fanout.push(ltx);
            let (ctx, crx) = mpsc::channel(4);
            controls.push(ctx);
            let (rtx, rrx) = tokio::sync::oneshot::channel();
            readies.push(rrx);
            let name = inst.name.clone();
            let fut = driver::run_instance(inst.clone(), nl.clone(), lrx, Some(tracking.clone()), crx, Some(rtx));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = fut.await {
                    error!(instance = %name, "{e:#}");
                    return Err(e);
                }
                Ok(())
            }));
        }
        tokio::spawn(async move {
            while let Some(ev) = link_events.recv().await {
                fanout.retain(|tx| tx.send(ev.clone()).is_ok());
            }
        });
        for r in readies {
            if r.await.is_err() {
                // The instance failed to start; its task holds the error.
                for t in tasks {
                    if let Ok(Err(e)) = t.await {
                        return Err(e);
                    }
                }
                bail!("a VRRP instance failed to start");
            }
        }
    }

    let status = format!(
        "{} VRRP instance(s), {} proxy service(s){}",
        cfg.vrrp.len(),
        cfg.proxy.len(),
        proxy_driver.map(|d| format!(" on {d}")).unwrap_or_default()
    );
    info!("halo {} running from {}: {status}", env!("CARGO_PKG_VERSION"), config_path.display());
    sdnotify::notify(&format!("READY=1\nSTATUS={status}"));
    let mut watchdog = sdnotify::watchdog_interval().map(tokio::time::interval);

    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => {
                warn!("SIGHUP: live reload is not supported by this build; restart halo to apply config changes");
            }
            _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                sdnotify::notify("WATCHDOG=1");
            }
        }
    }
    sdnotify::notify("STOPPING=1");
    for c in &controls {
        let _ = c.send(Control::Shutdown).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
