//! `[anycast.*]`: service addresses held on the loopback while their
//! tracked services are healthy, for the routing daemon on the host (FRR's
//! bgpd, `redistribute connected` with a route map) to announce. halo does
//! not speak BGP; it only holds or removes the address.
//!
//! The decisions are [`announcer`] (pure, one per address). This module is
//! the driver: one task for every address, which reads the tracked items
//! (proxy and l4 health boards, track scripts, link states), feeds the
//! announcers, carries out their actions through netlink, publishes the
//! state for `halo status`, and takes `halo anycast withdraw|announce`.

pub mod announcer;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{Anycast, TrackTarget};
use crate::health::track_script::ScriptWatch;
use crate::telemetry::status::{AnycastView, StatusHub};
use crate::vrrp::driver::ProxyTracking;
use crate::vrrp::netlink::{LinkEvent, Netlink};
use announcer::{Action, Announcer, State};

/// What the tracked items are read from; replaced on reload.
#[derive(Clone, Default)]
pub struct Sources {
    pub proxy: Option<ProxyTracking>,
    pub l4: Option<ProxyTracking>,
    pub scripts: Option<ScriptWatch>,
}

type Reply = oneshot::Sender<Result<String, String>>;

enum Control {
    Withdraw(String, Reply),
    Announce(String, Reply),
    Reconfigure(Vec<Anycast>, Sources, Reply),
    Shutdown(oneshot::Sender<()>),
}

/// The running anycast task.
pub struct AnycastSide {
    tx: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

/// Every interface the sections name exists (checked before a reload
/// changes anything, so a missing one fails the reload, not half of it).
pub async fn check_machine(cfgs: &[Anycast], nl: &Netlink) -> Result<()> {
    for a in cfgs {
        nl.link_by_name(&a.interface)
            .await
            .map_err(|e| anyhow!("[anycast.{}]: {e:#}", a.name))?;
    }
    Ok(())
}

impl AnycastSide {
    /// Look the interfaces up, remove what a killed halo left, and start
    /// the task; it holds each address once its tracked items are up.
    pub async fn start(
        cfgs: &[Anycast],
        nl: Netlink,
        links: mpsc::UnboundedReceiver<LinkEvent>,
        sources: Sources,
        hub: std::sync::Arc<StatusHub>,
    ) -> Result<AnycastSide> {
        check_machine(cfgs, &nl).await?;
        let mut task = Task {
            nl,
            entries: Vec::new(),
            links_up: HashMap::new(),
            sources,
            hub,
        };
        task.reconfigure(cfgs.to_vec()).await?;
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(task.run(rx, links));
        Ok(AnycastSide { tx, task })
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Control) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| "the anycast task is not running".to_string())?;
        rx.await
            .map_err(|_| "the anycast task is not running".to_string())?
    }

    /// `halo anycast withdraw NAME`.
    pub async fn withdraw(&self, name: &str) -> Result<String, String> {
        self.ask(|r| Control::Withdraw(name.to_string(), r)).await
    }

    /// `halo anycast announce NAME`.
    pub async fn announce(&self, name: &str) -> Result<String, String> {
        self.ask(|r| Control::Announce(name.to_string(), r)).await
    }

    /// A reload: new sections and new health sources. Sections whose
    /// address and interface stay keep their state (and a withdrawal by
    /// hand); others are removed or added.
    pub async fn reload(&self, cfgs: &[Anycast], sources: Sources) -> Result<String, String> {
        self.ask(|r| Control::Reconfigure(cfgs.to_vec(), sources, r))
            .await
    }

    /// Remove every address and drain route, and end the task.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

struct Entry {
    cfg: Anycast,
    index: u32,
    ann: Announcer,
    since: Instant,
}

struct Task {
    nl: Netlink,
    entries: Vec<Entry>,
    links_up: HashMap<String, bool>,
    sources: Sources,
    hub: std::sync::Arc<StatusHub>,
}

/// A change signal, or never when there is no source.
async fn changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None;
            }
        }
        None => std::future::pending().await,
    }
}

async fn script_changed(w: &mut Option<ScriptWatch>) {
    match w {
        Some(s) => {
            if !s.changed().await {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Control>,
        mut links: mpsc::UnboundedReceiver<LinkEvent>,
    ) {
        let beat = crate::run::liveness::register("anycast");
        let subscribe = |s: &Sources| {
            (
                s.proxy.as_ref().map(|p| p.board.subscribe()),
                s.l4.as_ref().map(|p| p.board.subscribe()),
                s.scripts.clone(),
            )
        };
        let (mut health, mut l4, mut scripts) = subscribe(&self.sources);
        // A safety net: the state is re-read every second even without a
        // change signal (and the liveness counter moves).
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.step().await;
            beat.bump();
            let deadline = self
                .entries
                .iter()
                .filter_map(|e| e.ann.poll_timeout())
                .min()
                .map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = tick.tick() => {}
                _ = changed(&mut health) => {}
                _ = changed(&mut l4) => {}
                _ = script_changed(&mut scripts) => {}
                Some(ev) = links.recv() => {
                    self.links_up.insert(ev.name, ev.up);
                }
                msg = rx.recv() => match msg {
                    None => return self.shutdown().await,
                    Some(Control::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Control::Withdraw(name, reply)) => {
                        let _ = reply.send(self.by_hand(&name, true));
                    }
                    Some(Control::Announce(name, reply)) => {
                        let _ = reply.send(self.by_hand(&name, false));
                    }
                    Some(Control::Reconfigure(cfgs, sources, reply)) => {
                        self.sources = sources;
                        (health, l4, scripts) = subscribe(&self.sources);
                        let n = cfgs.len();
                        let r = self
                            .reconfigure(cfgs)
                            .await
                            .map(|()| format!("anycast: {n} address(es)"))
                            .map_err(|e| format!("{e:#}"));
                        let _ = reply.send(r);
                    }
                },
            }
        }
    }

    // The driver reads the clock; `announcer` is given `now` (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    fn by_hand(&mut self, name: &str, withdraw: bool) -> Result<String, String> {
        let Some(e) = self.entries.iter_mut().find(|e| e.cfg.name == name) else {
            let known: Vec<&str> = self.entries.iter().map(|e| e.cfg.name.as_str()).collect();
            return Err(format!(
                "no [anycast.{name}] (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let now = Instant::now().into_std();
        let a = e.cfg.address.addr();
        if withdraw {
            e.ann.withdraw(now);
            info!(anycast = %name, "{name}: {a} withdrawn by hand");
            Ok(format!(
                "{name}: {a} withdrawn until `halo anycast announce {name}` (still answering for {} while the router moves its flows)",
                crate::config::format_duration(e.cfg.drain)
            ))
        } else {
            e.ann.announce(now);
            let state = if e.ann.reason() == "every tracked item is up" {
                "announced again".to_string()
            } else {
                format!("announced once {}", e.ann.reason())
            };
            info!(anycast = %name, "{name}: {a} {state}");
            Ok(format!("{name}: {a} {state}"))
        }
    }

    /// Take the new sections: an unchanged address keeps its announcer;
    /// others are shut down (their address removed) or started (a stale
    /// copy removed first).
    // The driver reads the clock; `announcer` is given `now` (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    async fn reconfigure(&mut self, cfgs: Vec<Anycast>) -> Result<()> {
        let mut indexes = Vec::new();
        for a in &cfgs {
            let link = self
                .nl
                .link_by_name(&a.interface)
                .await
                .map_err(|e| anyhow!("[anycast.{}]: {e:#}", a.name))?;
            indexes.push(link.index);
            for t in &a.track {
                if let TrackTarget::Interface(i) = t {
                    if !self.links_up.contains_key(i) {
                        let up = self.nl.link_by_name(i).await.is_ok_and(|l| l.up);
                        self.links_up.insert(i.clone(), up);
                    }
                }
            }
        }
        let mut old = std::mem::take(&mut self.entries);
        for (cfg, index) in cfgs.into_iter().zip(indexes) {
            let same = old.iter().position(|e| {
                e.cfg.name == cfg.name && e.cfg.address == cfg.address && e.index == index
            });
            match same {
                Some(i) => {
                    let mut e = old.remove(i);
                    e.ann.set_drain(cfg.drain);
                    e.cfg = cfg;
                    self.entries.push(e);
                }
                None => {
                    // After a kill -9 the kernel keeps what the last halo
                    // held; held or not is decided afresh, from withdrawn.
                    let a = cfg.address;
                    if let Err(e) = self.nl.del_address(index, a).await {
                        warn!(anycast = %cfg.name, "{}: removing a stale {a}: {e:#}", cfg.name);
                    }
                    if let Err(e) = self.nl.del_local_route(index, a.addr()).await {
                        warn!(anycast = %cfg.name, "{}: {e:#}", cfg.name);
                    }
                    self.entries.push(Entry {
                        ann: Announcer::new(cfg.drain),
                        cfg,
                        index,
                        since: Instant::now(),
                    });
                }
            }
        }
        for mut e in old {
            e.ann.shutdown();
            Self::act(&self.nl, &mut e).await;
            info!(anycast = %e.cfg.name, "{}: removed from the config", e.cfg.name);
        }
        self.step().await;
        Ok(())
    }

    /// Read every tracked item, feed the announcers, carry out what they
    /// say, publish.
    // The driver reads the clock; `announcer` is given `now` (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    async fn step(&mut self) {
        let now = Instant::now().into_std();
        for i in 0..self.entries.len() {
            let down = self.down(&self.entries[i].cfg);
            let e = &mut self.entries[i];
            e.ann.set_down(now, down);
            e.ann.handle_timeout(now);
            Self::act(&self.nl, e).await;
        }
        self.publish();
    }

    /// Sentences for the tracked items that are down.
    fn down(&self, cfg: &Anycast) -> Vec<String> {
        let board_down = |t: &Option<ProxyTracking>, name: &str| {
            t.as_ref()
                .and_then(|tr| tr.index.get(name).map(|&i| !tr.board.service_up(i)))
                // No board (yet): not known to be up.
                .unwrap_or(true)
        };
        cfg.track
            .iter()
            .filter_map(|t| match t {
                TrackTarget::Proxy(p) => board_down(&self.sources.proxy, p)
                    .then(|| format!("track {p}: no healthy server")),
                TrackTarget::L4(s) => board_down(&self.sources.l4, s)
                    .then(|| format!("track l4 {s}: no healthy server")),
                TrackTarget::Script(s) => self
                    .sources
                    .scripts
                    .as_ref()
                    .is_none_or(|w| w.is_down(s))
                    .then(|| format!("track script {s}: failing")),
                TrackTarget::Interface(i) => (!self.links_up.get(i).copied().unwrap_or(false))
                    .then(|| format!("track interface {i}: link down")),
            })
            .collect()
    }

    // The driver reads the clock; `announcer` is given `now` (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    async fn act(nl: &Netlink, e: &mut Entry) {
        let (name, a, index) = (e.cfg.name.clone(), e.cfg.address, e.index);
        while let Some(action) = e.ann.poll_action() {
            let r = match action {
                Action::AddAddress => nl.add_address(index, a).await,
                Action::DelAddress => nl.del_address(index, a).await,
                Action::AddDrainRoute => nl.add_local_route(index, a.addr()).await,
                Action::DelDrainRoute => nl.del_local_route(index, a.addr()).await,
                Action::StateChanged { from, to, why } => {
                    e.since = Instant::now();
                    info!(anycast = %name, "{name}: {a} {from} -> {to} ({why})");
                    Ok(())
                }
            };
            if let Err(err) = r {
                error!(anycast = %name, "{name}: {err:#}");
            }
        }
    }

    async fn shutdown(&mut self) {
        for e in &mut self.entries {
            e.ann.shutdown();
            Self::act(&self.nl, e).await;
        }
        self.publish();
    }

    // The driver reads the clock; `announcer` is given `now` (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    fn publish(&self) {
        let now = Instant::now();
        let views = self
            .entries
            .iter()
            .map(|e| AnycastView {
                name: e.cfg.name.clone(),
                address: e.cfg.address.to_string(),
                interface: e.cfg.interface.clone(),
                state: e.ann.state().name().to_string(),
                reason: e.ann.reason(),
                withdrawn_by_hand: e.ann.withdrawn_by_hand(),
                drain_secs_left: match e.ann.state() {
                    State::Draining { until } => Some(
                        Instant::from_std(until)
                            .saturating_duration_since(now)
                            .as_secs_f64(),
                    ),
                    _ => None,
                },
                state_secs: now.saturating_duration_since(e.since).as_secs_f64(),
            })
            .collect();
        self.hub.set_anycast(views);
    }
}
