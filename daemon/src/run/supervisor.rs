//! `halo run`: wires the pieces together and owns the process lifecycle
//! (signals, the control socket, reloads, systemd notification, orderly
//! shutdown).
//!
//! It does not decide what a reload changes: `run::reload::plan` does, and
//! [`Supervisor::apply`] carries out one `Change` at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::config::{self, Config, L4Service, ProxyService, VrrpInstance};
use crate::control::{self, Envelope, Request, Response, ServerAction};
use crate::health::track_script::ScriptRuntime;
use crate::health::{self, AdminState, HealthBoard, HealthRuntime};
use crate::proxy::{self, ProxyRuntime};
use crate::run::reload::{self, Change, StopWhy};
use crate::run::sdnotify;
use crate::telemetry::status::StatusHub;
use crate::vrrp::driver::{self, Control, ProxyTracking};
use crate::vrrp::netlink::{self, LinkEvent, Netlink};
use crate::vrrp::router::Release;

/// Options from the command line that override the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub socket: Option<PathBuf>,
}

pub fn run(cfg: Config, config_path: &Path, opts: RunOptions) -> Result<()> {
    if !cfg.vrrp.is_empty() {
        let missing = crate::vrrp::sockets::missing_capabilities();
        if !missing.is_empty() {
            bail!(
                "VRRP needs {} (run as root, or under systemd with AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN)",
                missing.join(" and ")
            );
        }
    }
    // Before any thread starts (they inherit it and go back themselves).
    crate::run::priority::raise_main();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the VRRP runtime")?;
    rt.block_on(async move {
        // Before anything registers with `liveness`. The main runtime (VRRP
        // instances, control socket, reloads) is a part of its own.
        sdnotify::start_watchdog();
        tokio::spawn(crate::run::liveness::with_heartbeat(
            "main runtime",
            std::future::pending::<()>(),
        ));
        let mut d = Supervisor::start(cfg, config_path.to_path_buf(), opts).await?;
        let r = d.serve().await;
        d.stop().await;
        r
    })
}

/// The proxy side: board, checks and workers for one version of the config.
struct ProxySide {
    board: Arc<HealthBoard>,
    health: Option<HealthRuntime>,
    proxy: Option<ProxyRuntime>,
    /// Traffic counters, carried over by name across reloads.
    stats: Arc<crate::telemetry::stats::ProxyStats>,
}

impl ProxySide {
    /// Start a generation; on reload `prev` is the running one, whose
    /// counters carry over and whose listening sockets are shared.
    fn start(services: &[ProxyService], prev: Option<&mut ProxySide>) -> Result<ProxySide> {
        // Servers a reload leaves as they were keep their health state.
        let board = match &prev {
            Some(p) => HealthBoard::new_after(services, &p.board),
            None => HealthBoard::new(services),
        };
        let stats =
            crate::telemetry::stats::ProxyStats::new(services, prev.as_ref().map(|p| &*p.stats));
        let health = health::spawn(services, board.clone()).context("starting health checks")?;
        let prev_proxy = prev.map(|p| &mut p.proxy);
        let proxy = match prev_proxy {
            _ if services.is_empty() => None,
            // A reload: hand the running workers the new configuration when
            // their listeners stay the same, else a new generation that
            // shares the old one's listening sockets.
            Some(slot) if slot.is_some() => {
                let running = slot.as_mut().expect("checked");
                if running.reconfigure(services, board.clone(), stats.clone()) {
                    slot.take()
                } else {
                    Some(
                        proxy::start_generation(
                            services,
                            board.clone(),
                            stats.clone(),
                            Some(running),
                        )
                        .context("starting the proxy")?,
                    )
                }
            }
            _ => Some(
                proxy::start_generation(services, board.clone(), stats.clone(), None)
                    .context("starting the proxy")?,
            ),
        };
        Ok(ProxySide {
            board,
            health: Some(health),
            proxy,
            stats,
        })
    }

    fn tracking(&self, services: &[ProxyService]) -> ProxyTracking {
        ProxyTracking {
            board: self.board.clone(),
            index: services
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect::<HashMap<_, _>>(),
        }
    }

    /// Stop in the background (`ProxyRuntime` joins threads). With a
    /// `drain` grace period, requests in flight finish first: a reload.
    fn stop(mut self, drain: Option<Duration>) -> JoinHandle<()> {
        let proxy = self.proxy.take();
        let health = self.health.take();
        if let (Some(p), Some(_)) = (&proxy, drain) {
            // Now, not in the background: a request that arrives on a
            // retired connection after the reload returned is its last.
            p.retire();
        }
        tokio::task::spawn_blocking(move || {
            match (proxy, drain) {
                (Some(p), Some(grace)) => p.drain(grace),
                (Some(p), None) => p.shutdown(),
                (None, _) => {}
            }
            if let Some(h) = health {
                h.shutdown();
            }
        })
    }
}

struct InstanceHandle {
    control: mpsc::Sender<Control>,
    task: JoinHandle<Result<()>>,
}

/// Everything `halo run` owns.
struct Supervisor {
    /// The config as it runs: a reload that fails half-way leaves the
    /// parts it applied here, so commands and the next reload see them.
    cfg: Config,
    config_path: PathBuf,
    hub: Arc<StatusHub>,
    proxy: ProxySide,
    nl: Option<Netlink>,
    links: Option<mpsc::UnboundedSender<mpsc::UnboundedSender<LinkEvent>>>,
    instances: BTreeMap<String, InstanceHandle>,
    requests: mpsc::Receiver<Envelope>,
    socket_path: PathBuf,
    /// The `[admin]` listener (metrics, status page); idle when off.
    admin: crate::admin::AdminServer,
    /// `[track_script.*]` runs, shared by every instance.
    scripts: ScriptRuntime,
    /// `halo vrrp release`s kept across restarts, beside the socket.
    releases: crate::run::release::Store,
    /// `[l4.*]`: checks and the nftables reconciler (none once stopped).
    l4: Option<crate::l4::L4Side>,
    /// One task per `[vrrp_sync_group.*]` (vrrp::group_run).
    groups: Vec<JoinHandle<()>>,
    /// `[anycast.*]` addresses (none configured: not running).
    anycast: Option<crate::anycast::AnycastSide>,
}

impl Supervisor {
    async fn start(cfg: Config, config_path: PathBuf, opts: RunOptions) -> Result<Supervisor> {
        let socket_path = opts
            .socket
            .clone()
            .unwrap_or_else(|| cfg.global.control_socket.clone());
        let listener = control::bind(&socket_path)?;
        let (req_tx, requests) = mpsc::channel(16);
        tokio::spawn(control::serve(listener, req_tx));

        let scripts = ScriptRuntime::start(&cfg.track_scripts)?;
        let proxy = ProxySide::start(&cfg.proxy, None)?;
        let hub = StatusHub::new(config_path.display().to_string(), proxy.board.clone());
        hub.set_board(proxy.board.clone(), &cfg.proxy);
        hub.set_stats(proxy.stats.clone());
        let admin = crate::admin::AdminServer::start(&cfg.admin, hub.clone())?;
        let l4 = crate::l4::L4Side::start(&cfg.l4, &[]).await?;
        hub.set_l4(&l4);
        let mut d = Supervisor {
            cfg: cfg.clone(),
            config_path,
            hub,
            proxy,
            nl: None,
            links: None,
            instances: BTreeMap::new(),
            requests,
            socket_path: socket_path.clone(),
            admin,
            scripts,
            releases: crate::run::release::Store::beside(&socket_path),
            l4: Some(l4),
            groups: Vec::new(),
            anycast: None,
        };
        if let Err(e) = d.start_instances(&cfg.vrrp).await {
            d.stop().await;
            return Err(e);
        }
        if let Err(e) = d.reload_anycast(&cfg.anycast).await {
            d.stop().await;
            return Err(e);
        }
        d.start_groups();
        if let Some(p) = &cfg.global.pid_file {
            std::fs::write(p, format!("{}\n", std::process::id()))
                .with_context(|| format!("writing pid file {}", p.display()))?;
        }
        let status = d.summary();
        info!(
            "halo {} running from {}: {status}; control socket {}",
            env!("CARGO_PKG_VERSION"),
            d.config_path.display(),
            socket_path.display()
        );
        sdnotify::notify(&format!("READY=1\nSTATUS={status}"));
        Ok(d)
    }

    fn summary(&self) -> String {
        format!(
            "{} VRRP instance(s), {} proxy service(s), {} l4 service(s){}",
            self.cfg.vrrp.len(),
            self.cfg.proxy.len(),
            self.cfg.l4.len(),
            self.proxy
                .proxy
                .as_ref()
                .map(|p| format!(" on {}", p.driver()))
                .unwrap_or_default()
        )
    }

    /// Netlink and the link-event fan-out, made on first use.
    fn netlink(&mut self) -> Result<Netlink> {
        if let Some(nl) = &self.nl {
            return Ok(nl.clone());
        }
        let nl = Netlink::connect()?;
        let mut events = netlink::watch_links()?;
        let (reg_tx, mut reg_rx) = mpsc::unbounded_channel::<mpsc::UnboundedSender<LinkEvent>>();
        tokio::spawn(async move {
            let mut subs: Vec<mpsc::UnboundedSender<LinkEvent>> = Vec::new();
            loop {
                tokio::select! {
                    Some(s) = reg_rx.recv() => subs.push(s),
                    ev = events.recv() => match ev {
                        Some(ev) => subs.retain(|tx| tx.send(ev.clone()).is_ok()),
                        None => break,
                    },
                }
            }
        });
        self.nl = Some(nl.clone());
        self.links = Some(reg_tx);
        Ok(nl)
    }

    /// Start instances and wait until each has opened its sockets (or
    /// failed, which is returned).
    async fn start_instances(&mut self, list: &[VrrpInstance]) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let nl = self.netlink()?;
        let mut readies = Vec::new();
        for inst in list {
            let (ltx, lrx) = mpsc::unbounded_channel();
            if let Some(reg) = &self.links {
                let _ = reg.send(ltx);
            }
            let (ctx, crx) = mpsc::channel(8);
            // A release that a previous halo left (a restart, an upgrade)
            // is the first thing the instance reads, before its first
            // timeout can make it master.
            if let Some(r) = self.restored_release(&inst.name) {
                let _ = ctx.try_send(Control::Release(r));
            }
            let (rtx, rrx) = oneshot::channel();
            let name = inst.name.clone();
            let fut = driver::run_instance(
                inst.clone(),
                nl.clone(),
                lrx,
                Some(self.proxy.tracking(&self.cfg.proxy)),
                Some(self.scripts.watch()),
                crx,
                Some(rtx),
                Some(self.hub.clone()),
            );
            let task = tokio::spawn(async move {
                let r = fut.await;
                if let Err(e) = &r {
                    error!(instance = %name, "{e:#}");
                }
                r
            });
            if let Some(l4) = &self.l4 {
                let _ = ctx.send(Control::L4Tracking(l4.tracking())).await;
            }
            readies.push((inst.name.clone(), rrx));
            self.instances
                .insert(inst.name.clone(), InstanceHandle { control: ctx, task });
        }
        for (name, r) in readies {
            if r.await.is_err() {
                let h = self.instances.remove(&name).expect("inserted above");
                return match h.task.await {
                    Ok(Err(e)) => Err(e),
                    _ => Err(anyhow::anyhow!("VRRP instance {name} failed to start")),
                };
            }
        }
        Ok(())
    }

    /// The release of `name` kept from before this start, if any.
    fn restored_release(&self, name: &str) -> Option<Release> {
        use crate::run::release::Restored;
        let path = self.releases.path(name);
        match self.releases.load(name) {
            Ok(Some(Restored::UntilReclaim)) => {
                info!(instance = %name, "{name}: still released (kept in {}) until `halo vrrp reclaim {name}`", path.display());
                Some(Release::UntilReclaimed)
            }
            Ok(Some(Restored::For(d))) => {
                info!(instance = %name, "{name}: still released (kept in {}) for {:.0}s more", path.display(), d.as_secs_f64());
                Some(Release::Until(tokio::time::Instant::now().into_std() + d))
            }
            Ok(Some(Restored::Over)) | Ok(None) => None,
            Err(e) => {
                error!(instance = %name, "{e:#}: starting unreleased");
                None
            }
        }
    }

    /// Where `[anycast.*]` tracks read from: the running boards and scripts.
    fn anycast_sources(&self) -> crate::anycast::Sources {
        crate::anycast::Sources {
            proxy: Some(self.proxy.tracking(&self.cfg.proxy)),
            l4: self.l4.as_ref().map(|l| l.tracking()),
            scripts: Some(self.scripts.watch()),
        }
    }

    /// Start the anycast task, or hand the running one new sections and
    /// sources (`self.cfg` is the new config by then). Returns what
    /// changed, for the reload's message.
    async fn reload_anycast(&mut self, list: &[crate::config::Anycast]) -> Result<Option<String>> {
        let sources = self.anycast_sources();
        if let Some(side) = &self.anycast {
            return side
                .reload(list, sources)
                .await
                .map(Some)
                .map_err(anyhow::Error::msg);
        }
        if list.is_empty() {
            return Ok(None);
        }
        let nl = self.netlink()?;
        let (ltx, lrx) = mpsc::unbounded_channel();
        if let Some(reg) = &self.links {
            let _ = reg.send(ltx);
        }
        let side =
            crate::anycast::AnycastSide::start(list, nl, lrx, sources, self.hub.clone()).await?;
        self.anycast = Some(side);
        Ok(Some(format!("anycast: {} address(es) started", list.len())))
    }

    async fn stop_instance(&mut self, name: &str) {
        if let Some(h) = self.instances.remove(name) {
            let _ = h.control.send(Control::Shutdown).await;
            let _ = h.task.await;
        }
    }

    async fn serve(&mut self) -> Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); return Ok(()); }
                _ = sigint.recv() => { info!("SIGINT: shutting down"); return Ok(()); }
                _ = sighup.recv() => {
                    info!("SIGHUP: reloading {}", self.config_path.display());
                    let r = self.reload().await;
                    if !r.ok {
                        error!("reload failed: {}", r.message);
                    }
                }
                Some((req, reply)) = self.requests.recv() => {
                    let resp = self.handle(req).await;
                    let _ = reply.send(resp);
                }
            }
        }
    }

    async fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response {
                ok: true,
                message: String::new(),
                status: Some(self.hub.snapshot()),
            },
            Request::Reload => self.reload().await,
            Request::AnycastWithdraw { ref name } | Request::AnycastAnnounce { ref name } => {
                let withdraw = matches!(req, Request::AnycastWithdraw { .. });
                let name = name.clone();
                let r = match &self.anycast {
                    None => Err(format!(
                        "no [anycast.{name}]: this halo has no [anycast.*] section"
                    )),
                    Some(a) if withdraw => a.withdraw(&name).await,
                    Some(a) => a.announce(&name).await,
                };
                match r {
                    Ok(m) => Response::ok(m),
                    Err(m) => Response::err(m),
                }
            }
            Request::VrrpRelease { instance, for_secs } => {
                let Some(h) = self.instances.get(&instance) else {
                    return Response::err(format!("no VRRP instance {instance:?}"));
                };
                let release = match for_secs {
                    Some(s) if s.is_finite() && s > 0.0 && s <= 86400.0 => Release::Until(
                        tokio::time::Instant::now().into_std() + Duration::from_secs_f64(s),
                    ),
                    Some(s) => return Response::err(format!("--for must be 0 < s <= 1d, not {s}")),
                    None => Release::UntilReclaimed,
                };
                let _ = h.control.send(Control::Release(release)).await;
                let kept = match self
                    .releases
                    .save(&instance, for_secs.map(Duration::from_secs_f64))
                {
                    Ok(()) => String::new(),
                    Err(e) => {
                        error!(instance = %instance, "{e:#}: the release ends if halo restarts");
                        format!("; NOT kept across a restart of halo: {e:#}")
                    }
                };
                Response::ok(match for_secs {
                    Some(s) => {
                        format!(
                            "{instance}: released for {s}s (priority 0 sent, staying backup){kept}"
                        )
                    }
                    None => {
                        format!("{instance}: released until `halo vrrp reclaim {instance}`{kept}")
                    }
                })
            }
            Request::VrrpReclaim { instance } => {
                let Some(h) = self.instances.get(&instance) else {
                    return Response::err(format!("no VRRP instance {instance:?}"));
                };
                let _ = h.control.send(Control::Reclaim).await;
                if let Err(e) = self.releases.remove(&instance) {
                    return Response::err(format!(
                        "{instance}: reclaimed, but {e:#}: a restart of halo would release it again"
                    ));
                }
                Response::ok(format!(
                    "{instance}: reclaimed, back to the configured priority"
                ))
            }
            Request::Server {
                action,
                service,
                server,
            } => {
                // A proxy service, else an [l4] one (a proxy of the same
                // name wins): on an l4 board, drain and disable take the
                // server out of the nftables map.
                let l4 = self.l4.as_ref();
                let (board, servers): (&Arc<HealthBoard>, Vec<&str>) = match self
                    .proxy
                    .board
                    .service_index(&service)
                {
                    Some(si) => (
                        &self.proxy.board,
                        self.cfg.proxy[si]
                            .servers
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect(),
                    ),
                    None => match l4.and_then(|l| Some((l, l.board.service_index(&service)?))) {
                        Some((l, si)) => (
                            &l.board,
                            l.services[si]
                                .servers
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect(),
                        ),
                        None => {
                            return Response::err(format!("no proxy or l4 service {service:?}"))
                        }
                    },
                };
                let si = board.service_index(&service).expect("found above");
                let Some(vi) = servers.iter().position(|s| *s == server) else {
                    return Response::err(format!("service {service} has no server {server:?}"));
                };
                let admin = match action {
                    ServerAction::Drain => AdminState::Drain,
                    ServerAction::Disable => AdminState::Disabled,
                    ServerAction::Enable => AdminState::Enabled,
                };
                board.set_admin(si, vi, admin);
                info!(service = %service, server = %server, "{service}/{server}: admin state {}", admin.as_str());
                Response::ok(format!("{service}/{server}: {}", admin.as_str()))
            }
        }
    }

    /// Re-read the config and apply what [`reload::plan`] lists, in order.
    /// An invalid file changes nothing. A change that fails stops the
    /// reload there; what was applied before it stays, and `self.cfg`
    /// follows each applied change, so that it always says what runs (a
    /// `halo server` command names servers by it, and the next reload
    /// compares with it).
    async fn reload(&mut self) -> Response {
        let new = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(errs) => return Response::err(errs.to_string()),
        };
        // An [anycast] interface that does not exist fails the reload
        // before anything changes.
        if !new.anycast.is_empty() {
            let checked = match self.netlink() {
                Ok(nl) => crate::anycast::check_machine(&new.anycast, &nl).await,
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                return Response::err(format!("{e:#} (still running the previous config)"));
            }
        }
        let changes = reload::plan(&self.cfg, &new);
        let mut notes = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            match self.apply(change, &new).await {
                Ok(note) => notes.extend(note),
                Err(e) => return self.reload_failed(&changes, i, &new, e).await,
            }
        }
        self.cfg = new;
        if notes.is_empty() {
            notes.push("no changes".into());
        }
        let msg = format!(
            "reloaded {}: {}",
            self.config_path.display(),
            notes.join("; ")
        );
        info!("{msg}");
        sdnotify::notify(&format!("STATUS={}", self.summary()));
        Response::ok(msg)
    }

    /// `changes[failed]` failed with `e`. The sync groups still follow a
    /// VRRP change made before it (they hold the members' channels).
    async fn reload_failed(
        &mut self,
        changes: &[Change],
        failed: usize,
        new: &Config,
        e: anyhow::Error,
    ) -> Response {
        if reload::groups_follow(changes, failed) {
            let _ = self.apply(&Change::SyncGroups, new).await;
        }
        Response::err(reload::failure(changes, failed, &format!("{e:#}")))
    }

    /// Apply one change of a reload and record it in `self.cfg`. Returns
    /// the note for the reload's message.
    async fn apply(&mut self, change: &Change, new: &Config) -> Result<Option<String>> {
        match change {
            Change::Admin => {
                // On error nothing changed.
                let note = self.admin.reconfigure(&new.admin)?;
                self.cfg.admin = new.admin.clone();
                Ok(note)
            }
            Change::Proxy => self.reload_proxy(&new.proxy).await.map(Some),
            Change::L4 { keep_board } => self.reload_l4(&new.l4, *keep_board).await.map(Some),
            Change::TrackScripts => {
                let scripts = ScriptRuntime::start(&new.track_scripts)?;
                let old = std::mem::replace(&mut self.scripts, scripts);
                for h in self.instances.values() {
                    let _ = h.control.send(Control::Scripts(self.scripts.watch())).await;
                }
                old.stop();
                self.cfg.track_scripts = new.track_scripts.clone();
                Ok(Some(format!(
                    "track scripts: {} restarted",
                    new.track_scripts.len()
                )))
            }
            Change::VrrpStop { name, why } => {
                self.stop_instance(name).await;
                self.cfg.vrrp.retain(|i| i.name != *name);
                Ok(Some(match why {
                    StopWhy::Removed => format!("vrrp {name}: removed"),
                    StopWhy::Restart => {
                        format!("vrrp {name}: restarted (interface, VRID, VIPs or timers changed)")
                    }
                }))
            }
            Change::VrrpUpdate(inst) => {
                if let Some(h) = self.instances.get(&inst.name) {
                    let _ = h.control.send(Control::Reconfigure(inst.clone())).await;
                }
                for i in self.cfg.vrrp.iter_mut().filter(|i| i.name == inst.name) {
                    *i = (**inst).clone();
                }
                Ok(Some(format!(
                    "vrrp {}: priority/tracking updated in place",
                    inst.name
                )))
            }
            Change::VrrpStart(list) => {
                // The instances count as configured even when one fails to
                // start (its error is the reload's answer).
                let r = self.start_instances(list).await;
                self.cfg.vrrp = new.vrrp.clone();
                r.map(|()| None)
            }
            Change::Anycast { changed } => {
                let note = self.reload_anycast(&new.anycast).await?;
                self.cfg.anycast = new.anycast.clone();
                Ok(note.filter(|_| *changed))
            }
            Change::SyncGroups => {
                // Every VRRP change is applied by now; the groups take
                // their template instance in file order.
                self.cfg.vrrp = new.vrrp.clone();
                self.cfg.sync_groups = new.sync_groups.clone();
                self.start_groups();
                Ok(None)
            }
        }
    }

    /// A changed service set starts a new generation beside the old one
    /// (SO_REUSEPORT lets both listen), then the old one stops.
    async fn reload_proxy(&mut self, services: &[ProxyService]) -> Result<String> {
        let side = ProxySide::start(services, Some(&mut self.proxy))?;
        let old = std::mem::replace(&mut self.proxy, side);
        self.hub.set_board(self.proxy.board.clone(), services);
        self.hub.set_stats(self.proxy.stats.clone());
        let tracking = self.proxy.tracking(services);
        for h in self.instances.values() {
            let _ = h.control.send(Control::Tracking(tracking.clone())).await;
        }
        // Admin states (drain, disable) carry over by name.
        for (si, svc) in services.iter().enumerate() {
            let Some(osi) = self.cfg.proxy.iter().position(|p| p.name == svc.name) else {
                continue;
            };
            for (vi, srv) in svc.servers.iter().enumerate() {
                if let Some(ovi) = self.cfg.proxy[osi]
                    .servers
                    .iter()
                    .position(|s| s.name == srv.name)
                {
                    if let Some(a) = old.board.admin(osi, ovi) {
                        self.proxy.board.set_admin(si, vi, a);
                    }
                }
            }
        }
        // The old generation stops accepting now and finishes what it
        // has in flight, for as long as its slowest timeout allows.
        let grace = self
            .cfg
            .proxy
            .iter()
            .map(|p| p.timeouts.server.max(p.timeouts.client) + p.timeouts.queue)
            .max()
            .unwrap_or_default();
        old.stop(Some(grace));
        self.cfg.proxy = services.to_vec();
        Ok(format!("proxy: {} service(s) reloaded", services.len()))
    }

    /// With `keep_board` (same servers and checks) the board, and what it
    /// knows (a DOWN server stays out of the map), is kept and only the
    /// table changes. Otherwise the old reconciler stops first so that it
    /// cannot rewrite the table after the new one; the table itself stays
    /// (conntrack and the flow sets keep established flows). A failure
    /// brings the old one back.
    async fn reload_l4(&mut self, services: &[L4Service], keep_board: bool) -> Result<String> {
        crate::l4::check_machine(services)?;
        // The plan compared configs; the board must also still be running.
        let keep = keep_board && self.l4.as_ref().is_some_and(|l| l.same_checks(services));
        match self.l4.as_mut() {
            Some(side) if keep => {
                side.reschedule(services).await?;
                self.hub.set_l4(side);
                self.cfg.l4 = services.to_vec();
                return Ok(format!("l4: {} service(s) rescheduled", services.len()));
            }
            _ => {}
        }
        let old_admin = self.l4.as_ref().map(|l| l.admin_states());
        if let Some(old) = self.l4.take() {
            old.retire().await;
        }
        // Drain and disable carry over by name.
        let old_admin = old_admin.unwrap_or_default();
        match crate::l4::L4Side::start(services, &old_admin).await {
            Ok(side) => self.l4 = Some(side),
            Err(e) => {
                self.l4 = crate::l4::L4Side::start(&self.cfg.l4, &old_admin)
                    .await
                    .ok();
                if let Some(l4) = &self.l4 {
                    self.hub.set_l4(l4);
                }
                return Err(e);
            }
        }
        if let Some(l4) = &self.l4 {
            self.hub.set_l4(l4);
            for h in self.instances.values() {
                let _ = h.control.send(Control::L4Tracking(l4.tracking())).await;
            }
        }
        self.cfg.l4 = services.to_vec();
        Ok(format!("l4: {} service(s) reloaded", services.len()))
    }

    /// (Re)start the sync groups on the running instances.
    fn start_groups(&mut self) {
        for g in self.groups.drain(..) {
            g.abort();
        }
        for group in &self.cfg.sync_groups {
            let members: Vec<_> = group
                .instances
                .iter()
                .filter_map(|n| {
                    self.instances
                        .get(n)
                        .map(|h| (n.clone(), h.control.clone()))
                })
                .collect();
            let template = self
                .cfg
                .vrrp
                .iter()
                .find(|v| group.instances.contains(&v.name));
            if let Some(t) = template {
                self.groups.push(crate::vrrp::group_run::spawn(
                    group.clone(),
                    members,
                    t.clone(),
                    self.hub.clone(),
                ));
            }
        }
    }

    async fn stop(&mut self) {
        sdnotify::notify("STOPPING=1");
        // First: the routers stop sending here while the proxy still runs.
        if let Some(a) = self.anycast.take() {
            a.stop().await;
        }
        for g in self.groups.drain(..) {
            g.abort();
        }
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for n in names {
            self.stop_instance(&n).await;
        }
        let board = self.proxy.board.clone();
        let stats = self.proxy.stats.clone();
        let side = std::mem::replace(
            &mut self.proxy,
            ProxySide {
                board,
                stats,
                health: None,
                proxy: None,
            },
        );
        let _ = side.stop(None).await;
        std::mem::replace(&mut self.scripts, ScriptRuntime::empty()).stop();
        if let Some(l4) = self.l4.take() {
            l4.stop().await;
        }
        if let Some(p) = &self.cfg.global.pid_file {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.socket_path);
        info!("halo stopped");
    }
}
