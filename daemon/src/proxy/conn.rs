//! One client connection, from accept to close, for either I/O driver.
//!
//! What it does: reads request heads under the `http_request` /
//! `keep_alive` timers, refuses bad ones with 400 (501 for an unknown
//! transfer coding), picks a server (queueing for a slot when servers are
//! at `maxconn`), connects or reuses a pooled connection (checked idle
//! first), retries where that is safe, streams bodies through the pure
//! codecs of `crate::http1` full duplex (the request body goes out while the
//! response comes back), tunnels upgrades, and writes one access-log line
//! per request. What it does not do: parse HTTP itself, or know which driver
//! runs it (everything goes through `stream::{Io, Stream}`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::timeout_at;

use super::balance::Balancer;
use super::rules;
use super::stream::{Io, Stream};
use crate::config::ProxyService;
use crate::health::{AdminState, HealthBoard, PassiveEvent};
use crate::http1::{
    self as http, BodyDecoder, BodyEncoder, BodyKind, ClientConn, HeadLimits, HttpError,
};

/// Read buffer size: one 16 KiB read covers a typical head and small page.
pub(super) const BUF: usize = 16 * 1024;
/// Idle server connections kept per server per worker.
const POOL_MAX: usize = 128;
/// "No deadline" for a response head while the request body still goes
/// out (within tokio's timer range).
const FAR: Duration = Duration::from_secs(365 * 86400);

/// What the request-body pump hands back: how it ended, the client's
/// buffer and `out`.
type Pumped = (Result<u64, Fail>, Vec<u8>, Vec<u8>);

/// State one service shares across its worker threads.
pub(crate) struct Shared {
    pub idx: usize,
    pub svc: ProxyService,
    pub board: Arc<HealthBoard>,
    /// Traffic counters (`/metrics`, `halo status`).
    pub stats: Arc<crate::stats::ServiceStats>,
    /// Requests in flight per server (leastconn, per-server maxconn).
    active: Vec<AtomicU32>,
    /// Client connections open (service maxconn).
    pub conns: AtomicU32,
    /// Requests waiting for a server slot.
    queued: AtomicU32,
    /// A server slot was released.
    slot_freed: Notify,
    /// A client connection closed.
    pub conn_freed: Notify,
    /// Set when a reload replaced this generation: finish the request in
    /// flight, then close instead of keeping the connection alive.
    pub draining: std::sync::atomic::AtomicBool,
    /// Requests between a complete head and the end of their response.
    /// (A drain waits for `conns`: idle keep-alive connections included.)
    pub busy: AtomicU32,
    limits: HeadLimits,
    /// `Host` for HTTP/1.0 requests that have none.
    default_host: Vec<String>,
}

impl Shared {
    pub fn new(
        idx: usize,
        svc: ProxyService,
        board: Arc<HealthBoard>,
        stats: Arc<crate::stats::ServiceStats>,
    ) -> Shared {
        let n = svc.servers.len();
        Shared {
            idx,
            limits: HeadLimits {
                max_head_bytes: svc.limits.max_head_bytes,
                max_headers: svc.limits.max_headers,
            },
            default_host: svc.servers.iter().map(|s| s.address.to_string()).collect(),
            svc,
            board,
            stats,
            active: (0..n).map(|_| AtomicU32::new(0)).collect(),
            conns: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            slot_freed: Notify::new(),
            conn_freed: Notify::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            busy: AtomicU32::new(0),
        }
    }
}

/// Idle connections to one server and since when each is idle.
type Idle<S> = VecDeque<(S, Instant)>;

/// One worker thread's view of a service.
pub(crate) struct Worker<I: Io> {
    pub shared: Arc<Shared>,
    balancer: RefCell<Balancer>,
    /// Idle keep-alive connections per server, newest last.
    pool: RefCell<Vec<Idle<I::Stream>>>,
    /// Per server, the descriptors of this worker's server connections
    /// with a request in flight (see [`InFlight`]).
    in_flight: RefCell<Vec<Vec<std::os::fd::RawFd>>>,
}

impl<I: Io> Worker<I> {
    pub fn new(shared: Arc<Shared>) -> Worker<I> {
        let weights = shared.svc.servers.iter().map(|s| s.weight).collect();
        let n = shared.svc.servers.len();
        Worker {
            balancer: RefCell::new(Balancer::new(shared.svc.balance, weights)),
            pool: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
            in_flight: RefCell::new(vec![Vec::new(); n]),
            shared,
        }
    }

    fn pool_idle(&self) -> Duration {
        self.shared.svc.timeouts.keep_alive
    }

    fn checkout(&self, srv: usize, now: Instant) -> Option<I::Stream> {
        let mut pool = self.pool.borrow_mut();
        let q = &mut pool[srv];
        while let Some((s, since)) = q.pop_back() {
            // A server that wrote after its response (a second response to
            // one request, a body after HEAD or 204, more than its
            // Content-Length) or closed while the connection sat idle would
            // hand those bytes to the next client: checked before each reuse.
            if now.saturating_duration_since(since) < self.pool_idle() && s.is_idle() {
                return Some(s);
            }
        }
        None
    }

    /// Keep a server connection whose response is complete for reuse.
    /// (Bytes beyond that response or its close are looked for at
    /// checkout, the one check that counts: a second one here cost a
    /// recv per request.)
    fn checkin(&self, srv: usize, s: I::Stream) {
        // A drained or disabled server gets no more requests: no pooling.
        if self.shared.board.admin(self.shared.idx, srv) != Some(AdminState::Enabled) {
            return;
        }
        let mut pool = self.pool.borrow_mut();
        let q = &mut pool[srv];
        if q.len() >= POOL_MAX {
            q.pop_front();
        }
        q.push_back((s, Instant::now()));
    }

    /// Apply the servers' admin states to this worker's connections:
    /// idle connections to a drained or disabled server are closed, and
    /// so are those with a request in flight to a disabled one (`disable`
    /// is "out at once"; `drain` lets them finish). Run on every admin
    /// change and every second.
    pub fn apply_admin(&self) {
        let sh = &self.shared;
        for srv in 0..sh.svc.servers.len() {
            let admin = sh.board.admin(sh.idx, srv);
            if admin == Some(AdminState::Enabled) {
                continue;
            }
            self.pool.borrow_mut()[srv].clear();
            if admin == Some(AdminState::Disabled) {
                for &fd in &self.in_flight.borrow()[srv] {
                    // SAFETY: a descriptor is registered only while its
                    // stream is open (`InFlight` is dropped before it), and
                    // shutdown(2) neither closes nor frees it: the
                    // exchange's next read sees the end, its write EPIPE.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        }
    }

    /// Drop idle connections past their time; run every second or so.
    pub fn prune_pool(&self, now: Instant) {
        let idle = self.pool_idle();
        for q in self.pool.borrow_mut().iter_mut() {
            q.retain(|(_, since)| now.saturating_duration_since(*since) < idle);
        }
    }
}

/// A server connection with a request in flight, registered with its
/// worker so that `halo server disable` can cut it; unregistered on drop,
/// which must come before the stream's (declare it after the stream).
pub(super) struct InFlight<'a, I: Io> {
    w: &'a Worker<I>,
    srv: usize,
    fd: std::os::fd::RawFd,
}

impl<'a, I: Io> InFlight<'a, I> {
    pub(super) fn new(w: &'a Worker<I>, srv: usize, s: &I::Stream) -> Self {
        let fd = s.fd();
        w.in_flight.borrow_mut()[srv].push(fd);
        InFlight { w, srv, fd }
    }
}

impl<I: Io> Drop for InFlight<'_, I> {
    fn drop(&mut self) {
        let mut v = self.w.in_flight.borrow_mut();
        if let Some(i) = v[self.srv].iter().position(|&f| f == self.fd) {
            v[self.srv].swap_remove(i);
        }
    }
}

/// A reserved request slot on a server; released on drop.
pub(super) struct Slot {
    shared: Arc<Shared>,
    pub(super) srv: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.active[self.srv].fetch_sub(1, Ordering::Relaxed);
        self.shared.stats.server_idle(self.srv);
        self.shared.slot_freed.notify_waiters();
    }
}

/// Why no server was obtained.
pub(super) enum NoServer {
    /// None is up.
    NoneUp,
    /// All at maxconn and the queue is full or timed out.
    QueueFull,
    QueueTimeout,
}

impl NoServer {
    /// The access log's note (the answer is 503 in every case).
    pub(super) fn note(&self) -> &'static str {
        match self {
            NoServer::NoneUp => "no server up",
            NoServer::QueueFull => "queue full",
            NoServer::QueueTimeout => "queue timeout",
        }
    }
}

/// A new connection to server `srv` by `deadline`, or why not: the access
/// log's note and the status (HAProxy answers a connect timeout with 503,
/// a refusal with 502). Shared by the HTTP handler and the TCP relay.
pub(super) async fn connect_server<I: Io>(
    svc: &ProxyService,
    srv: usize,
    deadline: Instant,
) -> Result<I::Stream, (&'static str, u16)> {
    let addr = svc.servers[srv].address;
    match timeout_at(deadline.into(), I::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            tracing::debug!(service = %svc.name, server = %svc.servers[srv].name, "connect to {addr}: {e}");
            Err(("connect failed", 502))
        }
        Err(_) => Err(("connect timeout", 503)),
    }
}

/// A failed connect to `srv`: the passive check hears it, this request
/// does not pick the server again while others are left, and the
/// counters. Returns the attempts so far and whether retries remain.
pub(super) fn connect_failed(
    shared: &Shared,
    srv: usize,
    tried: &mut [bool],
    attempts: &mut u32,
) -> bool {
    shared
        .board
        .report(shared.idx, srv, PassiveEvent::ConnectFailed);
    tried[srv] = true;
    *attempts += 1;
    let retry = *attempts <= shared.svc.retries;
    shared.stats.connect_failed(srv, retry);
    retry
}

/// Which side failed and how, for error pages and logs.
#[derive(Debug)]
enum Fail {
    ClientIo(io::Error),
    ClientTimeout,
    ClientProto(HttpError),
    ServerIo(io::Error),
    ServerTimeout,
    ServerProto(HttpError),
}

/// What the access log says about one request.
///
/// The request's method and target are not copied here: `emit` takes them
/// from the head, and they are formatted only when access lines are on.
struct Log {
    peer: SocketAddr,
    server: Option<usize>,
    status: u16,
    bytes: u64,
    /// When the first byte of the request head arrived (or accept).
    start: Instant,
    tq: Duration,
    tw: Option<Duration>,
    tc: Option<Duration>,
    tr: Option<Duration>,
    retries: u32,
    note: &'static str,
}

fn ms(d: Option<Duration>) -> i64 {
    d.map(|d| d.as_millis() as i64).unwrap_or(-1)
}

impl Log {
    fn emit(&self, shared: &Shared, method: &str, target: &str) {
        let tt = self.start.elapsed();
        shared
            .stats
            .response(self.server, self.status, self.bytes, tt);
        let server = self
            .server
            .map(|i| shared.svc.servers[i].name.as_str())
            .unwrap_or("-");
        tracing::info!(
            target: "halo::access",
            client = %self.peer,
            service = %shared.svc.name,
            server,
            status = self.status,
            bytes = self.bytes,
            Tq = self.tq.as_millis() as i64,
            Tw = ms(self.tw),
            Tc = ms(self.tc),
            Tr = ms(self.tr),
            Tt = tt.as_millis() as i64,
            retries = self.retries,
            note = self.note,
            "{} {} {} {}",
            self.peer,
            self.status,
            method,
            target,
        );
    }
}

/// Make sure `buf` can take another read without reallocating in the loop.
fn spare(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < BUF / 4 {
        buf.reserve(BUF);
    }
}

async fn read_more<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, Option<io::Error>> {
    spare(buf);
    let b = std::mem::take(buf);
    match timeout_at(deadline.into(), s.read(b)).await {
        Ok((r, b)) => {
            *buf = b;
            r.map_err(Some)
        }
        // The buffer went with the cancelled read; the caller closes.
        Err(_) => Err(None),
    }
}

async fn write<S: Stream>(
    s: &S,
    out: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Option<io::Error>> {
    let b = std::mem::take(out);
    match timeout_at(deadline.into(), s.write_all(b)).await {
        Ok((r, mut b)) => {
            b.clear();
            *out = b;
            r.map_err(Some)
        }
        Err(_) => Err(None),
    }
}

/// Serve one client connection until it closes.
pub(crate) async fn serve<I: Io>(w: Rc<Worker<I>>, client: I::Stream, peer: SocketAddr) {
    let shared = w.shared.clone();
    let t = &shared.svc.timeouts;
    let mut cbuf: Vec<u8> = Vec::with_capacity(BUF);
    let mut bufs = Bufs::default();
    let mut req = http::RequestHead::default();
    let mut first = true;
    loop {
        // === request head ===
        let mut start = Instant::now();
        let mut deadline = start + t.http_request;
        if !first && cbuf.is_empty() {
            // Even when a reload has retired this connection, it is not
            // closed here: the client may have sent its next request
            // already, and closing now would reset it. That request is
            // served with `Connection: close` (or keep_alive ends the wait).
            // Idle between requests: keep_alive, then http_request from the first byte.
            match read_more(&client, &mut cbuf, start + t.keep_alive).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    start = Instant::now();
                    deadline = start + t.http_request;
                }
            }
        }
        // A timed-out read takes the buffer with it: remember whether any
        // byte of this head had arrived.
        let mut seen = !cbuf.is_empty();
        let head_len = loop {
            seen |= !cbuf.is_empty();
            match http::check_head(&cbuf, shared.limits) {
                Ok(Some(n)) => break Ok(n),
                Ok(None) => {}
                Err(e) => break Err(Some(e)),
            }
            match read_more(&client, &mut cbuf, deadline).await {
                Ok(0) => {
                    if !(cbuf.is_empty() && (shared.svc.dontlognull || !first)) {
                        log_short(
                            &shared,
                            peer,
                            start,
                            400,
                            0,
                            "client closed before a full head",
                        );
                    }
                    return;
                }
                Ok(_) => {}
                Err(Some(_)) => return,
                Err(None) => break Err(None),
            }
        };
        let head_len = match head_len {
            Ok(n) => n,
            Err(Some(e)) => {
                refuse(&client, &shared, peer, start, 400, &e.to_string()).await;
                return;
            }
            Err(None) => {
                // Slowloris guard: the head did not arrive in time. Nothing
                // is logged for a connection that never sent a byte.
                if seen || !shared.svc.dontlognull {
                    refuse(&client, &shared, peer, start, 408, "http_request timeout").await;
                }
                return;
            }
        };
        if let Err(e) = req.parse_from(&cbuf[..head_len], shared.limits) {
            refuse(&client, &shared, peer, start, e.status(), &e.to_string()).await;
            return;
        }
        cbuf.drain(..head_len);
        let tq = start.elapsed();
        let mut log = Log {
            peer,
            server: None,
            status: 0,
            bytes: 0,
            start,
            tq,
            tw: None,
            tc: None,
            tr: None,
            retries: 0,
            note: "",
        };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let keep = exchange(&w, &client, &mut cbuf, &mut bufs, &req, &mut log).await;
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        log.emit(&shared, req.method(), req.target());
        if !keep {
            linger(&client).await;
            return;
        }
        first = false;
    }
}

fn log_short(
    shared: &Shared,
    peer: SocketAddr,
    start: Instant,
    status: u16,
    bytes: u64,
    note: &'static str,
) {
    Log {
        peer,
        server: None,
        status,
        bytes,
        start,
        tq: start.elapsed(),
        tw: None,
        tc: None,
        tr: None,
        retries: 0,
        note,
    }
    .emit(shared, "-", "-");
}

/// Answer with an error page, close, and log why.
async fn refuse<S: Stream>(
    client: &S,
    shared: &Shared,
    peer: SocketAddr,
    start: Instant,
    status: u16,
    why: &str,
) {
    tracing::debug!(client = %peer, service = %shared.svc.name, "refusing request: {why}");
    let mut page = http::error_response(status);
    let n = page.len() as u64;
    let _ = write(
        client,
        &mut page,
        Instant::now() + shared.svc.timeouts.client,
    )
    .await;
    // No shutdown of the read side here: `linger` half-closes and drains,
    // so a client still sending (a body behind a bad head) gets a clean
    // close instead of a zero window and then a reset.
    log_short(
        shared,
        peer,
        start,
        status,
        n,
        if status == 408 {
            "http_request timeout"
        } else {
            "bad request"
        },
    );
    linger(client).await;
}

/// Close after an error page without losing it: closing a socket with
/// unread input makes the kernel send RST, and the client may then drop
/// the page before reading it. Half-close, then drain what the client
/// still sends, bounded in time and bytes.
async fn linger<S: Stream>(client: &S) {
    client.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = Vec::with_capacity(BUF);
    let mut total = 0;
    while total < 1 << 20 {
        buf.clear();
        match read_more(client, &mut buf, deadline).await {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
    client.shutdown(Shutdown::Both);
}

/// Get a server slot: balance over up servers that have room, queueing
/// (bounded, `timeouts.queue`) when all of them are at maxconn.
/// `up` is scratch space for which servers are up.
pub(super) async fn acquire<I: Io>(
    w: &Worker<I>,
    client: IpAddr,
    tried: &[bool],
    up: &mut Vec<bool>,
) -> Result<Slot, NoServer> {
    let shared = &w.shared;
    let svc = shared.idx;
    let n = shared.svc.servers.len();
    let queue_deadline = Instant::now() + shared.svc.timeouts.queue;
    let mut queued = false;
    let result = loop {
        let notified = shared.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        up.clear();
        up.extend((0..n).map(|i| shared.board.is_up(svc, i)));
        let up = &*up;
        if !up.iter().any(|&u| u) {
            break Err(NoServer::NoneUp);
        }
        // Redispatch: prefer servers not tried yet; once every up server
        // failed, any up server may be tried again.
        let untried_left = (0..n).any(|i| up[i] && !tried[i]);
        let room = |i: usize| {
            let max = shared.svc.servers[i].maxconn;
            max == 0 || shared.active[i].load(Ordering::Relaxed) < max
        };
        let pick = w.balancer.borrow_mut().pick(
            client,
            |i| up[i] && (!untried_left || !tried[i]) && room(i),
            |i| shared.active[i].load(Ordering::Relaxed),
        );
        if let Some(i) = pick {
            let max = shared.svc.servers[i].maxconn;
            let prev = shared.active[i].fetch_add(1, Ordering::Relaxed);
            if max != 0 && prev >= max {
                // Another worker took the last slot in between.
                shared.active[i].fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            shared.stats.server_busy(i);
            break Ok(Slot {
                shared: shared.clone(),
                srv: i,
            });
        }
        if !queued {
            let q = shared.queued.fetch_add(1, Ordering::SeqCst);
            if q >= shared.svc.queue_len {
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(NoServer::QueueFull);
            }
            queued = true;
            // A slot freed before `queued` was raised woke nobody: look again.
            continue;
        }
        if timeout_at(queue_deadline.into(), notified).await.is_err() {
            break Err(NoServer::QueueTimeout);
        }
    };
    if queued {
        shared.queued.fetch_sub(1, Ordering::SeqCst);
    }
    result
}

/// Buffers kept for the life of a client connection, reused per request.
#[derive(Default)]
struct Bufs {
    /// Bytes on their way out (heads, encoded body data).
    out: Vec<u8>,
    /// The response's bytes while `out` carries a request body.
    rout: Vec<u8>,
    /// Bytes read from the server.
    sbuf: Vec<u8>,
    /// The server's response head.
    resp: http::ResponseHead,
    /// Servers tried for this request; servers up (`acquire`'s scratch).
    tried: Vec<bool>,
    up: Vec<bool>,
}

/// One request/response exchange. Returns whether the client connection
/// stays open for another request.
async fn exchange<I: Io>(
    w: &Rc<Worker<I>>,
    client: &I::Stream,
    cbuf: &mut Vec<u8>,
    bufs: &mut Bufs,
    req: &http::RequestHead,
    log: &mut Log,
) -> bool {
    let shared = w.shared.clone();
    let svc = &shared.svc;
    let t = &svc.timeouts;
    let n = svc.servers.len();
    let ip = log.peer.ip();
    let Bufs {
        out,
        rout,
        sbuf,
        resp,
        tried,
        up,
    } = bufs;
    out.clear();

    if req.expect_continue && req.body != BodyKind::None {
        // Answered here, and Expect is not forwarded: the body then flows
        // without a round trip to the server first.
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if write(client, out, Instant::now() + t.client).await.is_err() {
            log.status = 400;
            log.note = "client gone";
            return false;
        }
    }

    let except = svc
        .forwardfor
        .except
        .iter()
        .any(|net| net.contains(&ip.to_canonical()));
    let fwd = http::ForwardInfo {
        client: ip,
        add_forwarded: svc.forwardfor.enabled,
        except,
    };
    // Replaying is safe only when the server cannot have acted on the
    // request and nothing of a body has been consumed from the client.
    let replayable = req.idempotent() && req.body == BodyKind::None;
    tried.clear();
    tried.resize(n, false);
    let mut attempts = 0u32;
    let wait_start = Instant::now();

    loop {
        let slot = match acquire(w, ip, tried, up).await {
            Ok(s) => s,
            Err(why) => {
                log.tw = Some(wait_start.elapsed());
                log.note = why.note();
                return send_error(client, log, 503, t.client).await;
            }
        };
        let srv = slot.srv;
        log.server = Some(srv);
        log.tw.get_or_insert(wait_start.elapsed());
        let connect_start = Instant::now();

        // === connection: pooled or new ===
        let (server, pooled) = match w.checkout(srv, connect_start) {
            Some(s) => (s, true),
            None => match connect_server::<I>(svc, srv, connect_start + t.connect).await {
                Ok(s) => (s, false),
                Err((note, status)) => {
                    let retry = connect_failed(&shared, srv, tried, &mut attempts);
                    log.retries = attempts;
                    if !retry {
                        log.note = note;
                        return send_error(client, log, status, t.client).await;
                    }
                    continue;
                }
            },
        };
        // Registered while the request is in flight, so that `halo server
        // disable` can cut it (`Worker::apply_admin`): the exchange then
        // sees the server close.
        let _in_flight = InFlight::new(w, srv, &server);
        log.tc = Some(connect_start.elapsed());
        log.retries = attempts;

        // === request ===
        out.clear();
        let host = &shared.default_host[srv];
        http::encode_request(req, fwd, host, out);
        shared.stats.sent(srv, out.len() as u64);
        let sent_at = Instant::now();
        // Full duplex: a request body goes out (the pump) while the
        // response is read, so a server that answers before the body is
        // complete (a refused upload, an error) is heard at once, not after
        // a body that may never come. The pump owns the client's buffer
        // and `out` while it runs and hands them back when it ends.
        let mut pump: Option<Pin<Box<dyn Future<Output = Pumped> + '_>>> = None;
        if req.body == BodyKind::None {
            if let Err(e) = write(&server, out, sent_at + t.server).await {
                if pooled && replayable {
                    // The server closed its idle connection under us.
                    drop(slot);
                    continue;
                }
                let f = e.map(Fail::ServerIo).unwrap_or(Fail::ServerTimeout);
                return fail(client, log, f, t.client).await;
            }
        } else {
            let (mut cb, mut ob) = (std::mem::take(cbuf), std::mem::take(out));
            let (kind, tc, ts, to) = (req.body, t.client, t.server, &server);
            pump = Some(Box::pin(async move {
                let r = copy_body(
                    client,
                    &mut cb,
                    tc,
                    to,
                    ts,
                    BodyDecoder::new(kind),
                    BodyEncoder::new(kind),
                    &mut ob,
                    Side::ClientToServer,
                )
                .await;
                (r, cb, ob)
            }));
        }
        // How the request body ended (None: no body, or still going).
        let mut body_res: Option<Result<(), Fail>> = None;

        // === response head ===
        sbuf.clear();
        let head = {
            // While the body goes out the server may take its time to read
            // it: `timeouts.server` for the head counts from the body's end.
            let deadline = sent_at + if pump.is_some() { FAR } else { t.server };
            let head_fut = read_final_head(
                &server,
                sbuf,
                resp,
                shared.limits,
                req,
                client,
                t.client,
                deadline,
            );
            tokio::pin!(head_fut);
            loop {
                let Some(p) = pump.as_mut() else {
                    let body_end = Instant::now();
                    break match timeout_at((body_end + t.server).into(), &mut head_fut).await {
                        Ok(h) => h,
                        Err(_) => Err(HeadFail::Timeout),
                    };
                };
                let (r, cb, ob) = tokio::select! {
                    h = &mut head_fut => break h,
                    pumped = p.as_mut() => pumped,
                };
                pump = None;
                *cbuf = cb;
                *out = ob;
                match r {
                    Ok(n) => {
                        shared.stats.sent(srv, n);
                        body_res = Some(Ok(()));
                    }
                    // The client failed (bad chunk, timeout, gone): answer
                    // it and close, as before any response.
                    Err(f @ (Fail::ClientIo(_) | Fail::ClientTimeout | Fail::ClientProto(_))) => {
                        return fail(client, log, f, t.client).await;
                    }
                    // The server took no body for `timeouts.server`:
                    // waiting that long again for its head adds nothing.
                    Err(Fail::ServerTimeout) => {
                        return fail(client, log, Fail::ServerTimeout, t.client).await;
                    }
                    // The server stopped taking the body: it may have
                    // answered (and closed), so its response is read on.
                    Err(f) => body_res = Some(Err(f)),
                }
            }
        };
        match head {
            Ok(()) => {}
            Err(HeadFail::Closed) if pooled && replayable && sbuf.is_empty() => {
                drop(slot);
                continue;
            }
            Err(HeadFail::ClientGone) => {
                log.note = "client gone";
                return false;
            }
            Err(HeadFail::Closed) => {
                log.note = "server closed before responding";
                return send_error(client, log, 502, t.client).await;
            }
            Err(HeadFail::Io(e)) if pooled && replayable && sbuf.is_empty() => {
                tracing::debug!("pooled connection failed ({e}); retrying");
                drop(slot);
                continue;
            }
            Err(HeadFail::Io(_)) => {
                log.note = "server read error";
                return send_error(client, log, 502, t.client).await;
            }
            Err(HeadFail::Timeout) => {
                log.note = "server timeout";
                return send_error(client, log, 504, t.client).await;
            }
            Err(HeadFail::Invalid(e)) => {
                tracing::warn!(service = %svc.name, server = %svc.servers[srv].name, "bad response: {e}");
                log.note = "bad response";
                return send_error(client, log, 502, t.client).await;
            }
        };
        log.tr = Some(sent_at.elapsed());
        log.status = resp.status;
        let ev = if resp.status >= 500 {
            PassiveEvent::Status5xx
        } else {
            PassiveEvent::Ok
        };
        shared.board.report(shared.idx, srv, ev);

        // === upgrade: tunnel ===
        if resp.status == 101 {
            if req.upgrade().is_none() {
                log.note = "unrequested 101";
                return send_error(client, log, 502, t.client).await;
            }
            if let Some(p) = pump.take() {
                // The tunnel starts after the request body.
                let (r, cb, ob) = p.await;
                *cbuf = cb;
                *out = ob;
                if r.is_err() {
                    log.note = "request body failed before tunnel";
                    return false;
                }
            }
            http::encode_response(resp, BodyKind::None, req.minor, ClientConn::Upgrade, out);
            out.extend_from_slice(sbuf);
            log.bytes += out.len() as u64;
            if write(client, out, Instant::now() + t.client).await.is_err() {
                return false;
            }
            if !cbuf.is_empty() {
                let mut early = std::mem::take(cbuf);
                if write(&server, &mut early, Instant::now() + t.server)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            let idle = t.client.max(t.server);
            let (a, b) =
                futures::join!(tunnel(client, &server, idle), tunnel(&server, client, idle));
            log.bytes += b;
            let _ = a;
            log.note = "tunnel";
            drop(slot);
            return false;
        }

        // === response body ===
        let body_out = http::response_body_out(resp, req.minor);
        let client_keep = req.keep_alive
            && body_out != BodyKind::Close
            && !w.shared.draining.load(Ordering::Relaxed);
        // `out` is the pump's while it runs; the response then goes
        // through `rout`.
        let rbuf: &mut Vec<u8> = if pump.is_some() { rout } else { out };
        rbuf.clear();
        let conn = if client_keep {
            ClientConn::KeepAlive
        } else {
            ClientConn::Close
        };
        http::encode_response(resp, body_out, req.minor, conn, rbuf);
        let head_bytes = rbuf.len() as u64;
        let relay = async {
            if resp.body == BodyKind::None {
                write(client, rbuf, Instant::now() + t.client)
                    .await
                    .map(|_| 0)
                    .map_err(|e| e.map(Fail::ClientIo).unwrap_or(Fail::ClientTimeout))
            } else {
                copy_body(
                    &server,
                    sbuf,
                    t.server,
                    client,
                    t.client,
                    BodyDecoder::new(resp.body),
                    BodyEncoder::new(body_out),
                    rbuf,
                    Side::ServerToClient,
                )
                .await
            }
        };
        let mut pumped = None;
        let res = match pump.as_mut() {
            None => relay.await,
            Some(p) => {
                tokio::pin!(relay);
                tokio::select! {
                    r = &mut relay => r,
                    done = p.as_mut() => {
                        pumped = Some(done);
                        relay.await
                    }
                }
            }
        };
        match res {
            Ok(body_bytes) => {
                log.bytes += head_bytes + body_bytes;
                if pumped.is_none() {
                    if let Some(p) = pump.take() {
                        // The response is complete and the request body is
                        // not: a server keeping its connection reads the
                        // rest (nginx does), so it goes on; one closing
                        // takes no more, and the client connection closes
                        // (after draining what the client still sends).
                        if !resp.keep_alive {
                            log.note = "response before request body end";
                            return false;
                        }
                        pumped = Some(p.await);
                    }
                }
                drop(pump);
                if let Some((r, cb, ob)) = pumped {
                    *cbuf = cb;
                    *out = ob;
                    match r {
                        Ok(n) => {
                            shared.stats.sent(srv, n);
                            body_res = Some(Ok(()));
                        }
                        Err(f) => body_res = Some(Err(f)),
                    }
                }
                if let Some(Err(f)) = body_res {
                    // The response went out whole; the request did not.
                    tracing::debug!(client = %log.peer, "request body unfinished: {f:?}");
                    log.note = "request body unfinished";
                    return false;
                }
                if resp.keep_alive && sbuf.is_empty() && !shared.draining.load(Ordering::Relaxed) {
                    w.checkin(srv, server);
                }
                drop(slot);
                return client_keep;
            }
            Err(f) => {
                log.bytes += head_bytes;
                log.note = match f {
                    Fail::ServerTimeout => "server timeout in body",
                    Fail::ServerIo(_) | Fail::ServerProto(_) => "server error in body",
                    _ => "client error in body",
                };
                client.shutdown(Shutdown::Both);
                return false;
            }
        }
    }
}

async fn send_error<S: Stream>(client: &S, log: &mut Log, status: u16, t: Duration) -> bool {
    log.status = status;
    let mut page = http::error_response(status);
    log.bytes += page.len() as u64;
    let _ = write(client, &mut page, Instant::now() + t).await;
    false
}

async fn fail<S: Stream>(client: &S, log: &mut Log, f: Fail, t: Duration) -> bool {
    match f {
        Fail::ServerTimeout => {
            log.note = "server timeout";
            send_error(client, log, 504, t).await
        }
        Fail::ServerIo(e) => {
            tracing::debug!(client = %log.peer, "server I/O error: {e}");
            log.note = "server error";
            send_error(client, log, 502, t).await
        }
        Fail::ServerProto(e) => {
            tracing::debug!(client = %log.peer, "bad server body: {e}");
            log.note = "bad server body";
            send_error(client, log, 502, t).await
        }
        Fail::ClientProto(e) => {
            tracing::debug!(client = %log.peer, "bad request body: {e}");
            log.note = "bad request body";
            send_error(client, log, 400, t).await
        }
        Fail::ClientTimeout => {
            log.note = "client timeout";
            send_error(client, log, 408, t).await
        }
        Fail::ClientIo(e) => {
            tracing::debug!(client = %log.peer, "client I/O error: {e}");
            log.status = 400;
            log.note = "client gone";
            false
        }
    }
}

enum HeadFail {
    /// Writing an interim response to the client failed.
    ClientGone,
    Closed,
    Io(io::Error),
    Timeout,
    Invalid(HttpError),
}

/// Read a response head into `head`; returns its length in `buf`.
async fn read_head<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    head: &mut http::ResponseHead,
    limits: HeadLimits,
    method: &str,
    deadline: Instant,
) -> Result<usize, HeadFail> {
    loop {
        if !buf.is_empty() {
            match http::check_head(buf, limits) {
                Ok(Some(n)) => {
                    head.parse_from(&buf[..n], limits, method)
                        .and_then(|()| rules::check_response(head))
                        .map_err(HeadFail::Invalid)?;
                    return Ok(n);
                }
                Ok(None) => {}
                Err(e) => return Err(HeadFail::Invalid(e)),
            }
        }
        match read_more(s, buf, deadline).await {
            Ok(0) => return Err(HeadFail::Closed),
            Ok(_) => {}
            Err(Some(e)) => return Err(HeadFail::Io(e)),
            Err(None) => return Err(HeadFail::Timeout),
        }
    }
}

/// Read the final response head into `resp` (its bytes drained from
/// `sbuf`), passing interim responses (1xx but 101) on to HTTP/1.1 clients.
#[allow(clippy::too_many_arguments)]
async fn read_final_head<S: Stream, C: Stream>(
    server: &S,
    sbuf: &mut Vec<u8>,
    resp: &mut http::ResponseHead,
    limits: HeadLimits,
    req: &http::RequestHead,
    client: &C,
    client_t: Duration,
    deadline: Instant,
) -> Result<(), HeadFail> {
    loop {
        let hl = read_head(server, sbuf, resp, limits, req.method(), deadline).await?;
        sbuf.drain(..hl);
        if (100..200).contains(&resp.status) && resp.status != 101 {
            // Interim responses go to HTTP/1.1 clients as they are.
            if req.minor == 1 {
                let mut out = Vec::new();
                http::encode_response(resp, BodyKind::None, 1, ClientConn::KeepAlive, &mut out);
                if write(client, &mut out, Instant::now() + client_t)
                    .await
                    .is_err()
                {
                    return Err(HeadFail::ClientGone);
                }
            }
            continue;
        }
        return Ok(());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    ClientToServer,
    ServerToClient,
}

/// Stream a body from `src` to `dst` through the codecs. `out` may already
/// hold bytes to send first (the head), so small messages go in one write.
/// Returns the body bytes written to `dst`.
#[allow(clippy::too_many_arguments)]
async fn copy_body<A: Stream, B: Stream>(
    src: &A,
    sbuf: &mut Vec<u8>,
    src_t: Duration,
    dst: &B,
    dst_t: Duration,
    mut dec: BodyDecoder,
    enc: BodyEncoder,
    out: &mut Vec<u8>,
    side: Side,
) -> Result<u64, Fail> {
    let src_fail = |e: Option<io::Error>| match (side, e) {
        (Side::ClientToServer, Some(e)) => Fail::ClientIo(e),
        (Side::ClientToServer, None) => Fail::ClientTimeout,
        (Side::ServerToClient, Some(e)) => Fail::ServerIo(e),
        (Side::ServerToClient, None) => Fail::ServerTimeout,
    };
    let src_proto = |e: HttpError| match side {
        Side::ClientToServer => Fail::ClientProto(e),
        Side::ServerToClient => Fail::ServerProto(e),
    };
    let dst_fail = |e: Option<io::Error>| match (side, e) {
        (Side::ClientToServer, Some(e)) => Fail::ServerIo(e),
        (Side::ClientToServer, None) => Fail::ServerTimeout,
        (Side::ServerToClient, Some(e)) => Fail::ClientIo(e),
        (Side::ServerToClient, None) => Fail::ClientTimeout,
    };
    let mut data: Vec<u8> = Vec::new();
    let mut written: u64 = 0;
    loop {
        if !sbuf.is_empty() && !dec.is_done() {
            let before = out.len();
            let consumed = if enc == BodyEncoder::Raw {
                dec.decode(sbuf, out).map_err(src_proto)?
            } else {
                data.clear();
                let c = dec.decode(sbuf, &mut data).map_err(src_proto)?;
                enc.encode(&data, out);
                c
            };
            sbuf.drain(..consumed);
            written += (out.len() - before) as u64;
        }
        if dec.is_done() {
            let before = out.len();
            enc.finish(out);
            written += (out.len() - before) as u64;
            if !out.is_empty() {
                write(dst, out, Instant::now() + dst_t)
                    .await
                    .map_err(dst_fail)?;
            }
            return Ok(written);
        }
        if !out.is_empty() {
            write(dst, out, Instant::now() + dst_t)
                .await
                .map_err(dst_fail)?;
        }
        match read_more(src, sbuf, Instant::now() + src_t).await {
            Ok(0) => {
                dec.on_eof().map_err(src_proto)?;
            }
            Ok(_) => {}
            Err(e) => return Err(src_fail(e)),
        }
    }
}

/// Copy one direction of an upgraded connection until EOF, error or idle
/// timeout, then close the write side. Returns bytes copied.
async fn tunnel<A: Stream, B: Stream>(src: &A, dst: &B, idle: Duration) -> u64 {
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut total = 0u64;
    loop {
        match read_more(src, &mut buf, Instant::now() + idle).await {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if write(dst, &mut buf, Instant::now() + idle).await.is_err() {
                    src.shutdown(Shutdown::Both);
                    break;
                }
            }
            Err(_) => {
                // Timed out or failed: end both directions.
                src.shutdown(Shutdown::Both);
                dst.shutdown(Shutdown::Both);
                return total;
            }
        }
    }
    dst.shutdown(Shutdown::Write);
    total
}
