//! The admin listener: `/metrics` (Prometheus), `/status.json` (the same
//! snapshot as `halo status --json`) and `/`, a self-contained live status
//! page, on the `[admin] bind` addresses. Off unless configured.
//!
//! A deliberately tiny HTTP/1.1 server on the daemon's current-thread
//! runtime: GET and HEAD, one request per connection, a bounded head
//! ([`http::MAX_HEAD`]), a 5 s deadline to read it and to write the
//! answer, at most [`MAX_CONNS`] connections at once. Optional basic auth
//! (`auth`) guards every path; password hashing runs on the blocking pool
//! so it never stalls VRRP. Pure parts: `http` (parse, encode), `metrics`
//! (render), `auth` (header decode and hash check).
//!
//! Not here: collecting the numbers (`status::StatusHub`, `stats`).

pub mod auth;
pub mod http;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use crate::config::Admin;
use crate::telemetry::status::StatusHub;
use auth::{Auth, Quick};
use http::{BadRequest, Response};

/// Connections served at once; more wait in the kernel backlog.
pub const MAX_CONNS: usize = 32;
/// To read a request head, and again to write the answer.
const IO_DEADLINE: Duration = Duration::from_secs(5);
/// Password checks at once: each is thousands of SHA-512 rounds.
const MAX_HASHING: usize = 2;

/// The page, inline CSS and JS, no external assets.
const PAGE: &str = include_str!("page.html");
/// The page may only talk to its own origin and load nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What every connection task shares.
struct Shared {
    hub: Arc<StatusHub>,
    auth: RwLock<Option<Arc<Auth>>>,
    conns: Arc<Semaphore>,
    hashing: Arc<Semaphore>,
}

/// The running listener: one accept task per bound address.
pub struct AdminServer {
    cfg: Admin,
    shared: Arc<Shared>,
    listeners: BTreeMap<SocketAddr, JoinHandle<()>>,
}

impl AdminServer {
    /// Bind every `[admin] bind` address (none: nothing runs). Must be
    /// called inside the tokio runtime that will serve it.
    pub fn start(cfg: &Admin, hub: Arc<StatusHub>) -> anyhow::Result<AdminServer> {
        let mut s = AdminServer {
            cfg: Admin::default(),
            shared: Arc::new(Shared {
                hub,
                auth: RwLock::new(None),
                conns: Arc::new(Semaphore::new(MAX_CONNS)),
                hashing: Arc::new(Semaphore::new(MAX_HASHING)),
            }),
            listeners: BTreeMap::new(),
        };
        s.reconfigure(cfg)?;
        Ok(s)
    }

    /// Apply a new `[admin]`: new addresses are bound before removed ones
    /// close, and the auth setting changes in place. On error nothing
    /// changed. Returns a note for the reload message when something did.
    pub fn reconfigure(&mut self, cfg: &Admin) -> anyhow::Result<Option<String>> {
        if *cfg == self.cfg {
            return Ok(None);
        }
        let auth = match &cfg.basic_auth {
            Some(b) => {
                Some(Arc::new(Auth::new(b).map_err(|e| {
                    anyhow::anyhow!("[admin] basic_auth_hash: {e}")
                })?))
            }
            None => None,
        };
        let mut added = BTreeMap::new();
        for addr in &cfg.bind {
            if self.listeners.contains_key(addr) || added.contains_key(addr) {
                continue;
            }
            // Dropping `added` on error closes what was bound so far.
            let l = bind(*addr).with_context(|| format!("[admin] cannot listen on {addr}"))?;
            added.insert(*addr, l);
        }
        *self.shared.auth.write().unwrap_or_else(|e| e.into_inner()) = auth;
        for (addr, l) in added {
            tracing::info!("admin listener on http://{addr}/ (/metrics, /status.json)");
            let task = tokio::spawn(accept_loop(l, self.shared.clone()));
            self.listeners.insert(addr, task);
        }
        self.listeners.retain(|addr, task| {
            let keep = cfg.bind.contains(addr);
            if !keep {
                tracing::info!("admin listener on {addr} closed");
                task.abort();
            }
            keep
        });
        self.cfg = cfg.clone();
        Ok(Some(format!(
            "admin: {}{}",
            if cfg.bind.is_empty() {
                "off".to_string()
            } else {
                format!("listening on {:?}", cfg.bind)
            },
            if cfg.basic_auth.is_some() {
                ", basic auth"
            } else {
                ""
            }
        )))
    }

    /// The addresses being listened on.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        for task in self.listeners.values() {
            task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restart must not wait out TIME_WAIT connections of the last run.
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(64)
}

async fn accept_loop(l: TcpListener, shared: Arc<Shared>) {
    loop {
        // Wait for a slot first: beyond MAX_CONNS clients wait in the backlog.
        let Ok(permit) = shared.conns.clone().acquire_owned().await else {
            return;
        };
        match l.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    serve(stream, peer, &shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off, keep listening.
                tracing::warn!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // The listener is a driver: it reads the clock (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let deadline = tokio::time::Instant::now() + IO_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let parsed = loop {
        match http::parse(&buf) {
            Ok(Some(req)) => break Ok(req),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let mut chunk = [0u8; 2048];
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                if !buf.is_empty() {
                    respond(&mut stream, Response::error(408), false).await;
                }
                return;
            }
        }
    };
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            if let BadRequest::Invalid(why) = &e {
                tracing::debug!("admin: bad request from {peer}: {why}");
            }
            respond(&mut stream, Response::error(e.status()), false).await;
            return;
        }
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        let r = Response::error(405).header("Allow", "GET, HEAD");
        respond(&mut stream, r, false).await;
        return;
    }
    if !authorized(shared, req.authorization.as_deref(), peer).await {
        let r = Response::error(401).header(
            "WWW-Authenticate",
            "Basic realm=\"halo admin\", charset=\"UTF-8\"",
        );
        respond(&mut stream, r, head_only).await;
        return;
    }
    let r = route(&req.path, &shared.hub);
    tracing::debug!("admin: {peer} {} {} {}", req.method, req.path, r.status);
    respond(&mut stream, r, head_only).await;
}

async fn authorized(shared: &Shared, header: Option<&str>, peer: SocketAddr) -> bool {
    let auth = shared
        .auth
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(auth) = auth else {
        return true;
    };
    let ok = match auth.quick(header) {
        Quick::Accept => true,
        Quick::Refuse => false,
        Quick::Verify(password) => {
            let Ok(_permit) = shared.hashing.clone().acquire_owned().await else {
                return false;
            };
            let header = header.unwrap_or_default().to_string();
            let a = auth.clone();
            tokio::task::spawn_blocking(move || a.verify(&header, &password))
                .await
                .unwrap_or(false)
        }
    };
    if !ok && header.is_some() {
        tracing::info!("admin: refused credentials from {peer}");
    }
    ok
}

/// The answer for a path.
fn route(path: &str, hub: &StatusHub) -> Response {
    match path {
        "/" | "/index.html" => Response::new(200, "text/html; charset=utf-8", PAGE)
            .header("Content-Security-Policy", PAGE_CSP)
            .header("Referrer-Policy", "no-referrer"),
        "/status.json" => match serde_json::to_vec_pretty(&hub.snapshot()) {
            Ok(body) => Response::new(200, "application/json", body),
            Err(_) => Response::error(503),
        },
        "/metrics" => {
            let snap = hub.snapshot();
            let traffic = hub.stats().map(|s| s.read()).unwrap_or_default();
            // Wall-clock time for the start-time metric (clippy.toml).
            #[allow(clippy::disallowed_methods)]
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let start = (now - snap.uptime_secs).max(0.0);
            let body = metrics::render(&snap, &traffic, start);
            Response::new(200, metrics::CONTENT_TYPE, body)
        }
        _ => Response::error(404),
    }
}

async fn respond(stream: &mut TcpStream, r: Response, head_only: bool) {
    let bytes = r.encode(head_only);
    #[allow(clippy::disallowed_methods)]
    let deadline = tokio::time::Instant::now() + IO_DEADLINE;
    let _ = timeout_at(deadline, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}
