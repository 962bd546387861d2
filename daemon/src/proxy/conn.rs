//! One client connection, from accept to close, for either I/O driver.
//!
//! What it does: reads request heads under the `http_request` /
//! `keep_alive` timers, refuses bad ones with 400 (501 for an unknown
//! transfer coding), picks a server (queueing for a slot when servers are
//! at `maxconn`), connects or reuses a pooled connection (checked idle
//! first), retries where that is safe, streams bodies through the pure
//! codecs in `http.rs` full duplex (the request body goes out while the
//! response comes back), tunnels upgrades, and writes one access-log line
//! per request. What it does not do: parse HTTP itself, or know which driver
//! runs it (everything goes through `stream::{Io, Stream}`).
//!
//! One request is an `exchange`: get a server slot, then attempts
//! (`Attempt::forward`: connect or reuse, `send_request`,
//! `read_response_head`, then `relay_response` or `tunnel`) until one
//! answers or fails with an error that is not safe to retry. Every
//! failure is a `ProxyError` (`error.rs`) made where it happens, saying
//! which side failed and whether the request may go out again; the status,
//! error page and log note follow from it. Unit tests (`conn/tests.rs`) run
//! this code over in-memory streams with scripted clients and servers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::{timeout_at, Sleep};

use super::balance::Balancer;
use super::error::{Kind, NoServer, ProxyError, Retry, Side};
use super::rules;
use super::stream::{Io, Stream};
use crate::config::ProxyService;
use crate::health::{AdminState, HealthBoard, PassiveEvent};
use crate::http1::{self as http, BodyDecoder, BodyEncoder, BodyKind, ClientConn, HeadLimits};
use crate::telemetry::stats::AfterConnectFailure;

/// Read buffer size: one 16 KiB read covers a typical head and small page.
pub(super) const BUF: usize = 16 * 1024;
/// A client connection's first read buffer, and its buffer while idle
/// between requests: most request heads fit, and an idle connection (of
/// thousands) holds no more. A head that does not fit grows the buffer to
/// `BUF` and more, as before; the connection shrinks it again when idle.
const FIRST: usize = 1024;
/// Idle server connections kept per server per worker.
const POOL_MAX: usize = 128;
/// Per-request buffer sets kept by a worker for its next requests.
const SPARE_BUFS: usize = 64;
/// "No deadline" for a response head while the request body still goes
/// out (within tokio's timer range).
const FAR: Duration = Duration::from_secs(365 * 86400);

/// What the request-body pump hands back: how it ended, the client's
/// buffer and `out`.
type Pumped = (Result<u64, ProxyError>, Vec<u8>, Vec<u8>);

/// State one service shares across its worker threads.
pub(crate) struct Shared {
    pub idx: usize,
    pub svc: ProxyService,
    pub board: Arc<HealthBoard>,
    /// Traffic counters (`/metrics`, `halo status`).
    pub stats: Arc<crate::telemetry::stats::ServiceStats>,
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
        stats: Arc<crate::telemetry::stats::ServiceStats>,
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
    /// Buffers of finished requests, for the next ones: a connection holds
    /// them only while it has a request in flight, so an idle keep-alive
    /// connection costs no response buffers, and a request allocates none.
    /// Boxed: a set is a few hundred bytes (a response head, two timers),
    /// and taking one by value and putting it back copied all of it, some
    /// 1,200 instructions per request; a box moves as a pointer.
    #[allow(clippy::vec_box)]
    spare: RefCell<Vec<Box<Bufs>>>,
    /// The same for client connections (see [`ConnBufs`]).
    // The box is the point: a set moves in and out as a pointer.
    #[allow(clippy::vec_box)]
    spare_conns: RefCell<Vec<Box<ConnBufs>>>,
}

impl<I: Io> Worker<I> {
    pub fn new(shared: Arc<Shared>) -> Worker<I> {
        let weights = shared.svc.servers.iter().map(|s| s.weight).collect();
        let n = shared.svc.servers.len();
        Worker {
            balancer: RefCell::new(Balancer::new(shared.svc.balance, weights)),
            pool: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
            in_flight: RefCell::new(vec![Vec::new(); n]),
            spare: RefCell::new(Vec::new()),
            spare_conns: RefCell::new(Vec::new()),
            shared,
        }
    }

    fn take_bufs(&self) -> Box<Bufs> {
        self.spare.borrow_mut().pop().unwrap_or_default()
    }

    /// Back to the worker, emptied: nothing of one request may reach
    /// another connection's.
    fn put_bufs(&self, mut b: Box<Bufs>) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < SPARE_BUFS {
            b.msg.out.clear();
            b.msg.rout.clear();
            b.msg.sbuf.clear();
            b.tried.clear();
            b.up.clear();
            spare.push(b);
        }
    }

    /// A client connection's read buffer and request head, from the
    /// spares of connections that ended (see [`ConnBufs`]).
    fn take_conn_bufs(&self) -> Box<ConnBufs> {
        self.spare_conns.borrow_mut().pop().unwrap_or_else(|| {
            Box::new(ConnBufs {
                cbuf: Vec::with_capacity(FIRST),
                req: http::RequestHead::default(),
            })
        })
    }

    /// Back to the worker when its connection ends, the buffer emptied;
    /// one that grew past `FIRST` is let go (an idle connection waits
    /// with `FIRST`). The head's old contents are never read: a parse
    /// starts by clearing it.
    fn put_conn_bufs(&self, mut b: Box<ConnBufs>) {
        let mut spare = self.spare_conns.borrow_mut();
        if spare.len() < SPARE_BUFS && b.cbuf.capacity() == FIRST {
            b.cbuf.clear();
            spare.push(b);
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
    fn checkin(&self, srv: usize, s: I::Stream, now: Instant) {
        // A drained or disabled server gets no more requests: no pooling.
        if self.shared.board.admin(self.shared.idx, srv) != Some(AdminState::Enabled) {
            return;
        }
        let mut pool = self.pool.borrow_mut();
        let q = &mut pool[srv];
        if q.len() >= POOL_MAX {
            q.pop_front();
        }
        q.push_back((s, now));
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

/// A new connection to server `srv` by `deadline`, or why not. Nothing
/// reached the server, so another attempt is safe (`Retry::Safe`). Shared
/// by the HTTP handler and the TCP relay.
pub(super) async fn connect_server<I: Io>(
    svc: &ProxyService,
    srv: usize,
    deadline: Instant,
) -> Result<I::Stream, ProxyError> {
    let kind = match timeout_at(deadline.into(), connect_tls::<I>(svc, srv)).await {
        Ok(Ok(s)) => return Ok(s),
        Ok(Err(kind)) => kind,
        Err(_) => Kind::ConnectTimeout,
    };
    Err(ProxyError::server(kind, Retry::Safe))
}

/// A TCP connection to server `srv`, and the TLS handshake over it when the
/// server has `tls` (`crate::tls::client`: verified against its CA and
/// name). Both count as the connect, within its timeout, as in HAProxy.
async fn connect_tls<I: Io>(svc: &ProxyService, srv: usize) -> Result<I::Stream, Kind> {
    let server = &svc.servers[srv];
    let addr = server.address;
    let s = I::connect(addr).await.map_err(|e| {
        tracing::debug!(service = %svc.name, server = %server.name, "connect to {addr}: {e}");
        Kind::ConnectFailed
    })?;
    let Some(t) = &server.tls else {
        return Ok(s);
    };
    I::connect_tls(s, t.config.clone(), t.server_name(addr.ip()))
        .await
        .map_err(|e| {
            // Warned: a certificate that fails verification is a
            // configuration problem that no passive check explains.
            tracing::warn!(service = %svc.name, server = %server.name, "TLS handshake with {addr} failed: {e}");
            Kind::Tls
        })
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
    let next = if retry {
        AfterConnectFailure::Retry
    } else {
        AfterConnectFailure::GiveUp
    };
    shared.stats.connect_failed(srv, next);
    retry
}

/// What the access log says about one request.
///
/// Its times are kept as the clock readings the request's steps take
/// anyway (a deadline needs one), not as durations: a duration costs a
/// subtraction, and only a written access line shows Tq, Tw, Tc and Tr.
/// The request's method and target are not copied here either: `emit`
/// takes them from the head, and they are made text only when access
/// lines are on.
struct Log {
    peer: SocketAddr,
    server: Option<usize>,
    status: u16,
    bytes: u64,
    /// When the first byte of the request head arrived (or accept).
    start: Instant,
    /// When the head was complete (Tq is from `start` to here).
    head: Instant,
    /// Waiting for a server slot, connecting (or reusing a pooled
    /// connection), waiting for the response head: (from, to).
    tw: Option<(Instant, Instant)>,
    tc: Option<(Instant, Instant)>,
    tr: Option<(Instant, Instant)>,
    /// When the response was complete, if a step read the clock there
    /// (else `emit` does).
    end: Option<Instant>,
    retries: u32,
    /// What went wrong; empty only when the request and its response
    /// went through whole (`serve` then may close without a linger).
    note: &'static str,
    /// The client's protocol, by its ALPN name ("http/1.1", "h2").
    proto: &'static str,
}

fn ms(span: Option<(Instant, Instant)>) -> i64 {
    span.map(|(a, b)| b.saturating_duration_since(a).as_millis() as i64)
        .unwrap_or(-1)
}

impl Log {
    /// A request's line before anything is known but who asked, when its
    /// first byte came (`start`) and when its head was complete (`head`).
    fn new(peer: SocketAddr, start: Instant, head: Instant, proto: &'static str) -> Log {
        Log {
            peer,
            server: None,
            status: 0,
            bytes: 0,
            start,
            head,
            tw: None,
            tc: None,
            tr: None,
            end: None,
            retries: 0,
            note: "",
            proto,
        }
    }

    /// Count the request in the service's statistics and write its access
    /// line; `what` gives its method and target, asked only for a line.
    /// Returns when the request ended.
    fn emit<'a>(&self, shared: &Shared, what: impl FnOnce() -> (&'a str, &'a str)) -> Instant {
        let end = self.end.unwrap_or_else(Instant::now);
        let tt = end.saturating_duration_since(self.start);
        shared
            .stats
            .response(self.server, self.status, self.bytes, tt);
        if !tracing::enabled!(target: "halo::access", tracing::Level::INFO) {
            return end;
        }
        let (method, target) = what();
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
            Tq = ms(Some((self.start, self.head))),
            Tw = ms(self.tw),
            Tc = ms(self.tc),
            Tr = ms(self.tr),
            Tt = tt.as_millis() as i64,
            retries = self.retries,
            note = self.note,
            proto = self.proto,
            "{} {} {} {}",
            self.peer,
            self.status,
            method,
            target,
        );
        end
    }
}

/// Make sure `buf` can take another read without reallocating in the loop.
fn spare(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < BUF / 4 {
        buf.reserve(BUF);
    }
}

/// How a read with a deadline ended.
#[derive(Debug)]
enum Read {
    /// This many bytes were appended to the buffer.
    Data(usize),
    /// The peer ended its stream (FIN).
    Eof,
    Error(io::Error),
    /// The deadline passed. The buffer went with the cancelled read: the
    /// caller's is empty now, and the connection must close.
    Timeout,
}

impl Read {
    /// The failure this read is, on `side`, when it was not data:
    /// `retry` as the caller knows it (what may have reached a server).
    fn error(self, side: Side, retry: Retry) -> ProxyError {
        let kind = match self {
            Read::Data(_) | Read::Eof => Kind::Closed,
            Read::Error(e) => Kind::Read(e),
            Read::Timeout => Kind::Timeout,
        };
        ProxyError { kind, side, retry }
    }
}

/// Read more into `buf` until `deadline`, timed by a connection's own
/// `timer` if given (see [`timed`]), else by a timer of its own.
async fn read_more<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    timer: Option<Pin<&mut Sleep>>,
) -> Read {
    spare(buf);
    read_into(s, buf, deadline, timer).await
}

/// The first read of a request head, into an empty buffer: no larger than
/// the buffer already is (`FIRST` for a client connection), so that an
/// idle connection waits with a small buffer, most of all on io_uring where
/// the kernel holds the buffer for the whole wait.
async fn read_first<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    timer: Pin<&mut Sleep>,
) -> Read {
    if buf.capacity() == buf.len() {
        buf.reserve(FIRST);
    }
    read_into(s, buf, deadline, Some(timer)).await
}

/// Run `op` until `deadline` on `timer`: a tokio timer that serves one
/// connection's successive waits of one kind (a client's request heads, a
/// server's response heads) instead of a new one per read. It is armed
/// only when `op` has to wait, stays armed after, and is moved rather than
/// replaced: tokio moves a timer to a later deadline with one atomic
/// store, and the next wait's deadline is nearly always later. A timer per
/// read cost a lock of tokio's timer wheel, an insert and a removal per
/// wait. `None`: the deadline passed. (When a timer left armed fires
/// between waits, the task is polled once for nothing.)
///
/// `op` comes pinned where the caller made it, and this is a plain
/// function returning a future of two pointers and a deadline: an async
/// fn taking `op` by value copied the read or write future into its state
/// and again into a pinned slot: about 1,400 instructions per keep-alive
/// request on epoll (callgrind), more on io_uring, whose futures are larger.
fn timed<'a, F: Future>(
    mut timer: Pin<&'a mut Sleep>,
    deadline: Instant,
    mut op: Pin<&'a mut F>,
) -> impl Future<Output = Option<F::Output>> + 'a {
    let deadline = tokio::time::Instant::from_std(deadline);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = op.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
}

async fn read_into<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    timer: Option<Pin<&mut Sleep>>,
) -> Read {
    let b = std::mem::take(buf);
    let r = match timer {
        Some(timer) => timed(timer, deadline, std::pin::pin!(s.read(b))).await,
        None => timeout_at(deadline.into(), s.read(b)).await.ok(),
    };
    match r {
        Some((r, b)) => {
            *buf = b;
            match r {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Data(n),
                Err(e) => Read::Error(e),
            }
        }
        None => Read::Timeout,
    }
}

/// Why a write with a deadline failed.
#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    Timeout,
}

impl WriteError {
    /// The failure this write is, on `side`. A client that takes nothing
    /// for `timeouts.client` is as gone as one that closed (no error page
    /// could reach it): a write timeout on the client side is a write
    /// error, not the 408 of a client too slow to send.
    fn on(self, side: Side, retry: Retry) -> ProxyError {
        let kind = match (self, side) {
            (WriteError::Io(e), _) => Kind::Write(e),
            (WriteError::Timeout, Side::Client) => Kind::Write(io::ErrorKind::TimedOut.into()),
            (WriteError::Timeout, _) => Kind::Timeout,
        };
        ProxyError { kind, side, retry }
    }
}

async fn write<S: Stream>(s: &S, out: &mut Vec<u8>, deadline: Instant) -> Result<(), WriteError> {
    write_on(s, out, deadline, None).await
}

/// How `Attempt::send_request` left the request.
enum Sent<'s> {
    /// The head is in `out`, to be written together with the response
    /// head's read (`Attempt::write_with_head`).
    Now,
    /// The head went out; the body, if any, is going out through the pump.
    Written(Option<Pump<'s>>),
}

/// The largest request head written together with the response head's
/// read (`Attempt::write_with_head`): less than one segment on any path
/// (IPv6's minimum MTU is 1,280), so a connection with nothing queued
/// takes it whole at once: Linux allocates the first buffer of an empty
/// send queue and guarantees it `tcp_wmem[0]` (4 KiB) whatever its memory
/// pressure. Typical heads are a few hundred bytes; larger ones are
/// written first, as on epoll.
const WRITE_ALONE: usize = 1024;

/// [`write`], timed by a connection's own `timer` if given (see [`timed`]).
async fn write_on<S: Stream>(
    s: &S,
    out: &mut Vec<u8>,
    deadline: Instant,
    timer: Option<Pin<&mut Sleep>>,
) -> Result<(), WriteError> {
    let b = std::mem::take(out);
    let r = match timer {
        Some(timer) => timed(timer, deadline, std::pin::pin!(s.write_all(b))).await,
        None => timeout_at(deadline.into(), s.write_all(b)).await.ok(),
    };
    match r {
        Some((r, mut b)) => {
            b.clear();
            *out = b;
            r.map_err(WriteError::Io)
        }
        None => Err(WriteError::Timeout),
    }
}

/// A timer kept in a request's buffers (see [`MsgBufs`]) until first used.
type TimerSlot = Option<Pin<Box<Sleep>>>;

/// The timer in `slot`, made at its first use with `deadline`.
fn timer_at(slot: &mut TimerSlot, deadline: Instant) -> Pin<&mut Sleep> {
    slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())))
        .as_mut()
}

/// Serve one client connection until it closes.
pub(crate) async fn serve<I: Io>(w: Rc<Worker<I>>, client: I::Stream, peer: SocketAddr) {
    let shared = w.shared.clone();
    let t = &shared.svc.timeouts;
    let mut held = Held {
        w: &w,
        bufs: Some(w.take_conn_bufs()),
    };
    let Some(bufs) = held.bufs.as_deref_mut() else {
        return;
    };
    let ConnBufs { cbuf, req } = bufs;
    let mut first = true;
    // The clock is read where a deadline or the access log needs it, and
    // a reading serves every use up to the next wait: at accept (for the
    // first request), when a head's first byte came, when it was complete
    // (if a read came in between), when the response head came and when
    // the response was complete (the next request's keep_alive wait
    // counts from there). About 10 readings per request were 3 to 4.
    let mut now = Instant::now();
    // The timer of every request head's reads (see `timed`).
    let mut timer = std::pin::pin!(tokio::time::sleep_until((now + t.http_request).into()));
    loop {
        // === request head ===
        let mut start = now;
        let mut deadline = start + t.http_request;
        // Whether a read waited since `start`: then the head's completion
        // needs a reading of its own.
        let mut waited = first;
        if !first && cbuf.is_empty() {
            if cbuf.capacity() > FIRST {
                // A large head or a body grew it: idle with a small one.
                *cbuf = Vec::with_capacity(FIRST);
            }
            // Even when a reload has retired this connection, it is not
            // closed here: the client may have sent its next request
            // already, and closing now would reset it. That request is
            // served with `Connection: close` (or keep_alive ends the wait).
            // Idle between requests: keep_alive, then http_request from the first byte.
            match read_first(&client, cbuf, start + t.keep_alive, timer.as_mut()).await {
                Read::Eof | Read::Error(_) | Read::Timeout => return,
                Read::Data(_) => {
                    start = Instant::now();
                    deadline = start + t.http_request;
                    waited = false;
                }
            }
        }
        // A timed-out read takes the buffer with it: remember whether any
        // byte of this head had arrived.
        let mut seen = !cbuf.is_empty();
        let head_len = loop {
            seen |= !cbuf.is_empty();
            match http::check_head(cbuf, shared.limits) {
                Ok(Some(n)) => break Ok(n),
                Ok(None) => {}
                Err(e) => break Err(Some(e)),
            }
            waited = true;
            let r = if cbuf.is_empty() {
                read_first(&client, cbuf, deadline, timer.as_mut()).await
            } else {
                read_more(&client, cbuf, deadline, Some(timer.as_mut())).await
            };
            match r {
                Read::Eof => {
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
                Read::Data(_) => {}
                Read::Error(_) => return,
                Read::Timeout => break Err(None),
            }
        };
        let head_len = match head_len {
            Ok(n) => n,
            Err(Some(e)) => {
                refuse(&client, &shared, peer, start, ProxyError::bad_request(e)).await;
                return;
            }
            Err(None) => {
                // Slowloris guard: the head did not arrive in time. Nothing
                // is logged for a connection that never sent a byte.
                if seen || !shared.svc.dontlognull {
                    let e = ProxyError::client(Kind::RequestTimeout);
                    refuse(&client, &shared, peer, start, e).await;
                }
                return;
            }
        };
        if let Err(e) = req.parse_from(&cbuf[..head_len], shared.limits) {
            refuse(&client, &shared, peer, start, ProxyError::bad_request(e)).await;
            return;
        }
        cbuf.drain(..head_len);
        let head = if waited { Instant::now() } else { start };
        let mut log = Log::new(peer, start, head, "http/1.1");
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let mut rbufs = w.take_bufs();
        let keep = exchange(&w, &client, cbuf, &mut rbufs, req, &mut log).await;
        w.put_bufs(rbufs);
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        now = log.emit(&shared, || (req.method(), req.target()));
        if !keep {
            // A client that asked to close, whose request and response
            // went through whole (no note) with nothing unread (its FIN
            // may have come): a plain close cannot turn into a reset, so
            // no linger (nginx's `lingering_close on`). The linger's
            // half-close, read of the client's FIN and second shutdown
            // cost three syscalls and a round trip per `Connection:
            // close` request.
            let clean = !req.keep_alive && log.note.is_empty() && cbuf.is_empty();
            if !(clean && client.nothing_unread()) {
                linger(&client).await;
            }
            return;
        }
        first = false;
    }
}

/// One request that came another way than an HTTP/1 connection (an
/// HTTP/2 stream, `h2.rs`): the same exchange and access-log line as
/// `serve` gives each request. `client` carries the request body and takes
/// the response as HTTP/1.1 bytes; its body bytes are framed as `req.body`
/// says. `start`: when the request head arrived.
pub(super) async fn serve_request<I: Io, C: Stream>(
    w: &Rc<Worker<I>>,
    client: &C,
    req: &http::RequestHead,
    peer: SocketAddr,
    start: Instant,
    proto: &'static str,
) {
    let shared = &w.shared;
    let mut log = Log::new(peer, start, Instant::now(), proto);
    shared.busy.fetch_add(1, Ordering::Relaxed);
    let mut bufs = w.take_bufs();
    let mut cbuf = Vec::new();
    exchange(w, client, &mut cbuf, &mut bufs, req, &mut log).await;
    w.put_bufs(bufs);
    shared.busy.fetch_sub(1, Ordering::Relaxed);
    log.emit(shared, || (req.method(), req.target()));
}

/// An access-log line for a request that got no exchange (refused before
/// one), `proto` as in [`serve_request`]; its method and target.
pub(super) fn log_refused(
    shared: &Shared,
    peer: SocketAddr,
    start: Instant,
    status: u16,
    note: &'static str,
    proto: &'static str,
    (method, target): (&str, &str),
) {
    let now = Instant::now();
    Log {
        status,
        note,
        end: Some(now),
        ..Log::new(peer, start, now, proto)
    }
    .emit(shared, || (method, target));
}

fn log_short(
    shared: &Shared,
    peer: SocketAddr,
    start: Instant,
    status: u16,
    bytes: u64,
    note: &'static str,
) {
    let now = Instant::now();
    Log {
        status,
        bytes,
        note,
        end: Some(now),
        ..Log::new(peer, start, now, "http/1.1")
    }
    .emit(shared, || ("-", "-"));
}

/// Answer with an error page, close, and log why.
async fn refuse<S: Stream>(
    client: &S,
    shared: &Shared,
    peer: SocketAddr,
    start: Instant,
    e: ProxyError,
) {
    e.trace(peer, &shared.svc.name, "-");
    let status = e.status();
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
    log_short(shared, peer, start, status, n, e.note());
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
        match read_more(client, &mut buf, deadline, None).await {
            Read::Data(n) => total += n,
            Read::Eof | Read::Error(_) | Read::Timeout => break,
        }
    }
    client.shutdown(Shutdown::Both);
}

/// Get a server slot: balance over up servers that have room, queueing
/// (bounded, `timeouts.queue`) when all of them are at maxconn.
/// `up` is scratch space for which servers are up. `now`: a clock reading
/// of the caller's; the slot comes with the time it was got (`now` unless
/// it had to wait).
pub(super) async fn acquire<I: Io>(
    w: &Worker<I>,
    client: IpAddr,
    tried: &[bool],
    up: &mut Vec<bool>,
    now: Instant,
) -> Result<(Slot, Instant), NoServer> {
    // Nearly always a server has room: then no waiter is made. Making,
    // enabling and dropping one (below) locks the Notify twice and puts a
    // waiter in its list and takes it out, for nothing.
    match try_pick(w, client, tried, up) {
        Pick::Got(slot) => return Ok((slot, now)),
        Pick::NoneUp => return Err(NoServer::NoneUp),
        Pick::Full | Pick::Raced => {}
    }
    let shared = &w.shared;
    let queue_deadline = now + shared.svc.timeouts.queue;
    let mut queued = false;
    let result = loop {
        let notified = shared.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match try_pick(w, client, tried, up) {
            Pick::Got(slot) => {
                let at = if queued { Instant::now() } else { now };
                break Ok((slot, at));
            }
            Pick::NoneUp => break Err(NoServer::NoneUp),
            Pick::Raced => continue,
            Pick::Full => {}
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

/// What one look for a server slot found.
enum Pick {
    Got(Slot),
    /// No server is up.
    NoneUp,
    /// Every up server is at its maxconn.
    Full,
    /// Another worker took the last slot of the server picked: look again.
    Raced,
}

/// One look for a server slot (see [`acquire`]); never waits.
fn try_pick<I: Io>(w: &Worker<I>, client: IpAddr, tried: &[bool], up: &mut Vec<bool>) -> Pick {
    let shared = &w.shared;
    let svc = shared.idx;
    let n = shared.svc.servers.len();
    up.clear();
    up.extend((0..n).map(|i| shared.board.is_up(svc, i)));
    let up = &*up;
    if !up.iter().any(|&u| u) {
        return Pick::NoneUp;
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
    let Some(i) = pick else {
        return Pick::Full;
    };
    let max = shared.svc.servers[i].maxconn;
    let prev = shared.active[i].fetch_add(1, Ordering::Relaxed);
    if max != 0 && prev >= max {
        // Another worker took the last slot in between.
        shared.active[i].fetch_sub(1, Ordering::Relaxed);
        return Pick::Raced;
    }
    shared.stats.server_busy(i);
    Pick::Got(Slot {
        shared: shared.clone(),
        srv: i,
    })
}

/// A client connection's own buffers: what it read and not yet used (its
/// first read buffer, `FIRST` bytes) and its request head, whose storage
/// serves all its requests. A worker hands them from a connection that
/// ended to a new one: each was four allocations per connection (the
/// buffer, and the head's copy, fields and Connection items on its
/// first parse).
struct ConnBufs {
    cbuf: Vec<u8>,
    req: http::RequestHead,
}

/// Holds a connection's [`ConnBufs`] and gives them back to the worker
/// however the connection ends.
struct Held<'a, I: Io> {
    w: &'a Worker<I>,
    bufs: Option<Box<ConnBufs>>,
}

impl<I: Io> Drop for Held<'_, I> {
    fn drop(&mut self) {
        if let Some(b) = self.bufs.take() {
            self.w.put_conn_bufs(b);
        }
    }
}

/// A request's buffers, from the worker's spares (`Worker::take_bufs`).
#[derive(Default)]
struct Bufs {
    msg: MsgBufs,
    /// Servers tried for this request; servers up (`acquire`'s scratch).
    tried: Vec<bool>,
    up: Vec<bool>,
}

/// The buffers of one request's messages.
#[derive(Default)]
struct MsgBufs {
    /// Bytes on their way out (heads, encoded body data).
    out: Vec<u8>,
    /// The response's bytes while `out` carries a request body.
    rout: Vec<u8>,
    /// Bytes read from the server.
    sbuf: Vec<u8>,
    /// The server's response head.
    resp: http::ResponseHead,
    /// The timers (see `timed`) of the waits on the server (the request
    /// head going out, the response coming back) and of the response's
    /// writes to the client. Made at their first use; a worker's requests
    /// share them through its spare buffers, and one request's deadlines
    /// are later than the one's before, so they are moved, never re-made.
    timer: TimerSlot,
    client_timer: TimerSlot,
}

/// The request body on its way to the server while the response is read
/// (see [`Attempt::send_request`]).
type Pump<'a> = Pin<Box<dyn Future<Output = Pumped> + 'a>>;

/// One request/response exchange: get a server, then attempts on it (and
/// others) until one answers or an error is not safe to retry. Returns
/// whether the client connection stays open for another request.
async fn exchange<I: Io, C: Stream>(
    w: &Rc<Worker<I>>,
    client: &C,
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
    let Bufs { msg, tried, up } = bufs;

    if req.expect_continue && req.body != BodyKind::None {
        // Answered here, and Expect is not forwarded: the body then flows
        // without a round trip to the server first.
        msg.out.clear();
        msg.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if let Err(e) = write(client, &mut msg.out, Instant::now() + t.client).await {
            return answer(client, &shared, log, e.on(Side::Client, Retry::Never)).await;
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
        https: client.is_tls(),
    };
    // Replaying is safe only when the server cannot have acted on the
    // request and nothing of a body has been consumed from the client.
    let replayable = req.idempotent() && req.body == BodyKind::None;
    tried.clear();
    tried.resize(n, false);
    let mut attempts = 0u32;
    // The clock as of the last reading (see `serve`): a failed attempt
    // takes time, so the next one reads it again.
    let wait_start = log.head;
    let mut now = wait_start;

    loop {
        let (slot, connect_start) = match acquire(w, ip, tried, up, now).await {
            Ok(s) => s,
            Err(why) => {
                log.tw = Some((wait_start, Instant::now()));
                return answer(client, &shared, log, ProxyError::no_server(why)).await;
            }
        };
        let srv = slot.srv;
        log.server = Some(srv);
        log.tw.get_or_insert((wait_start, connect_start));
        let (server, reused, connected) = match connect(w, srv, connect_start).await {
            Ok(c) => c,
            Err(e) => {
                let more = connect_failed(&shared, srv, tried, &mut attempts);
                log.retries = attempts;
                if more && e.may_retry(false, replayable) {
                    now = Instant::now();
                    continue;
                }
                return answer(client, &shared, log, e).await;
            }
        };
        log.tc = Some((connect_start, connected));
        log.retries = attempts;
        let attempt = Attempt {
            w,
            client,
            req,
            srv,
            fwd,
        };
        match attempt
            .forward(server, slot, cbuf, msg, log, connected)
            .await
        {
            Ok(keep) => return keep,
            Err(e) if e.may_retry(reused, replayable) => {
                tracing::debug!(client = %log.peer, "pooled connection failed ({:?}); sending again", e.kind);
                now = Instant::now();
            }
            Err(e) => return answer(client, &shared, log, e).await,
        }
    }
}

/// A pooled connection to `srv` (`true`: reused) or a new one, and when
/// it was ready (`now`, a clock reading of the caller's, for a reused one).
async fn connect<I: Io>(
    w: &Worker<I>,
    srv: usize,
    now: Instant,
) -> Result<(I::Stream, bool, Instant), ProxyError> {
    if let Some(s) = w.checkout(srv, now) {
        return Ok((s, true, now));
    }
    let svc = &w.shared.svc;
    let s = connect_server::<I>(svc, srv, now + svc.timeouts.connect).await?;
    Ok((s, false, Instant::now()))
}

/// Answer a failure that came before any response reached the client:
/// an error page when the client can still take one, the access log's
/// status and note, the detail in the log. Returns false: the client
/// connection closes.
async fn answer<S: Stream>(client: &S, shared: &Shared, log: &mut Log, e: ProxyError) -> bool {
    let server = log
        .server
        .map_or("-", |i| shared.svc.servers[i].name.as_str());
    e.trace(log.peer, &shared.svc.name, server);
    log.status = e.status();
    log.note = e.note();
    if e.page() {
        let mut page = http::error_response(log.status);
        log.bytes += page.len() as u64;
        let _ = write(
            client,
            &mut page,
            Instant::now() + shared.svc.timeouts.client,
        )
        .await;
    }
    false
}

/// One attempt at a request on one server connection: what its steps
/// (send the request, read the response head, relay the body or tunnel)
/// share.
struct Attempt<'a, I: Io, C: Stream> {
    w: &'a Rc<Worker<I>>,
    client: &'a C,
    req: &'a http::RequestHead,
    srv: usize,
    fwd: http::ForwardInfo,
}

impl<'a, I: Io, C: Stream> Attempt<'a, I, C> {
    /// Send the request on `server` and relay the answer. `Ok(keep)`:
    /// the exchange is over (answered, or cut off after the response head
    /// went out), `keep` says whether the client connection stays open.
    /// `Err`: nothing went to the client yet; the error says whether the
    /// request may go out again.
    async fn forward(
        &self,
        server: I::Stream,
        slot: Slot,
        cbuf: &mut Vec<u8>,
        msg: &mut MsgBufs,
        log: &mut Log,
        sent_at: Instant,
    ) -> Result<bool, ProxyError> {
        // Registered while the request is in flight, so that `halo server
        // disable` can cut it (`Worker::apply_admin`): the attempt then
        // sees the server close. Declared after `server`, dropped before.
        let _in_flight = InFlight::new(self.w, self.srv, &server);
        let shared = &self.w.shared;
        let MsgBufs {
            out,
            rout,
            sbuf,
            resp,
            timer,
            client_timer,
        } = msg;

        let (pump, body_res) = match self
            .send_request(&server, cbuf, out, sent_at, timer)
            .await?
        {
            Sent::Now => {
                let r = self
                    .write_with_head(&server, sbuf, resp, cbuf, out, sent_at, timer)
                    .await?;
                (None, r)
            }
            Sent::Written(mut pump) => {
                let r = self
                    .read_response_head(&server, sbuf, resp, &mut pump, cbuf, out, sent_at, timer)
                    .await?;
                (pump, r)
            }
        };
        let answered = Instant::now();
        log.tr = Some((sent_at, answered));
        log.status = resp.status;
        let ev = if resp.status >= 500 {
            PassiveEvent::Status5xx
        } else {
            PassiveEvent::Ok
        };
        shared.board.report(shared.idx, self.srv, ev);

        if resp.status == 101 {
            if self.req.upgrade().is_none() {
                return Err(ProxyError::server(Kind::UnrequestedUpgrade, Retry::Never));
            }
            let tunnel = self.tunnel(&server, pump, cbuf, out, sbuf, resp, log).await;
            drop(slot);
            return Ok(tunnel);
        }
        let (keep, reusable) = self
            .relay_response(
                &server,
                pump,
                body_res,
                cbuf,
                (out, rout, sbuf),
                resp,
                (timer, client_timer),
                log,
                answered,
            )
            .await;
        let end = Instant::now();
        log.end = Some(end);
        if reusable {
            self.w.checkin(self.srv, server, end);
        }
        drop(slot);
        Ok(keep)
    }

    /// Send the request head; a request body starts going out through
    /// the returned pump, full duplex: the body goes out while the
    /// response is read, so a server that answers before the body is
    /// complete (a refused upload, an error) is heard at once, not after
    /// a body that may never come. The pump owns the client's buffer and
    /// `out` while it runs and hands them back when it ends.
    async fn send_request<'s>(
        &'s self,
        server: &'s I::Stream,
        cbuf: &mut Vec<u8>,
        out: &mut Vec<u8>,
        sent_at: Instant,
        timer: &mut TimerSlot,
    ) -> Result<Sent<'s>, ProxyError> {
        let shared = &self.w.shared;
        let t = &shared.svc.timeouts;
        out.clear();
        let host = &shared.default_host[self.srv];
        http::encode_request(self.req, self.fwd, host, out);
        shared.stats.sent(self.srv, out.len() as u64);
        if self.req.body == BodyKind::None {
            if out.len() <= WRITE_ALONE && server.writes_alone() {
                return Ok(Sent::Now);
            }
            // A pooled connection the server closed under us fails here
            // or at the response head: the request may go again.
            let deadline = sent_at + t.server;
            write_on(server, out, deadline, Some(timer_at(timer, deadline)))
                .await
                .map_err(|e| e.on(Side::Server, Retry::IfReused))?;
            return Ok(Sent::Written(None));
        }
        let (mut cb, mut ob) = (std::mem::take(cbuf), std::mem::take(out));
        let (kind, tc, ts, client) = (self.req.body, t.client, t.server, self.client);
        Ok(Sent::Written(Some(Box::pin(async move {
            let r = copy_body(
                client,
                &mut cb,
                tc,
                server,
                ts,
                BodyDecoder::new(kind),
                BodyEncoder::new(kind),
                &mut ob,
                Direction::ClientToServer,
                (None, None),
                Instant::now(),
            )
            .await;
            (r, cb, ob)
        }))))
    }

    /// Write the request head in `out` (`Sent::Now`) and read the final
    /// response head into `resp` at once, the write not waking the task.
    ///
    /// On io_uring a write is an operation whose completion wakes the
    /// connection's task, which is then polled again from the top of its
    /// state machine: ~800 instructions per request (callgrind; docs/
    /// benchmarks.md, "io_uring against epoll, session 9"). Here the write
    /// is polled with a waker that wakes nobody while the response head is
    /// awaited: the ring completes a write that small on its own
    /// (`Stream::writes_alone`), and its completion comes before the
    /// response it asks for, which wakes the task. The outcome is the
    /// one of a write then a read: a write that failed is the error (the
    /// request may go again on a new connection if this one was reused),
    /// and one that had not ended when the head read timed out is a
    /// write timeout.
    #[allow(clippy::too_many_arguments)]
    async fn write_with_head(
        &self,
        server: &I::Stream,
        sbuf: &mut Vec<u8>,
        resp: &mut http::ResponseHead,
        cbuf: &mut Vec<u8>,
        out: &mut Vec<u8>,
        sent_at: Instant,
        timer: &mut TimerSlot,
    ) -> Result<Option<Result<(), ProxyError>>, ProxyError> {
        let deadline = sent_at + self.w.shared.svc.timeouts.server;
        let mut write = std::pin::pin!(server.write_all(std::mem::take(out)));
        // No pump: the head read touches neither `cbuf` nor this.
        let mut unused = Vec::new();
        let mut no_pump = None;
        let mut head = std::pin::pin!(self.read_response_head(
            server,
            sbuf,
            resp,
            &mut no_pump,
            cbuf,
            &mut unused,
            sent_at,
            timer,
        ));
        let mut written = None;
        let head_res = std::future::poll_fn(|cx| {
            if written.is_none() {
                // First: the write's operation goes into the ring before
                // the read's.
                let mut quiet = std::task::Context::from_waker(std::task::Waker::noop());
                if let Poll::Ready(w) = write.as_mut().poll(&mut quiet) {
                    written = Some(w);
                }
            }
            head.as_mut().poll(cx)
        })
        .await;
        let (w, mut b) = match written {
            Some(w) => w,
            None if head_res.is_ok() => {
                // The response came first (a server answering what it
                // had not read whole): the write ends as a write would.
                match timeout_at(deadline.into(), &mut write).await {
                    Ok(w) => w,
                    Err(_) => return Err(WriteError::Timeout.on(Side::Server, Retry::IfReused)),
                }
            }
            None => {
                // Dropping `write` leaves the operation to the ring, as a
                // timed-out write does.
                let e = head_res.expect_err("not ok");
                return Err(match e.kind {
                    Kind::Timeout => WriteError::Timeout.on(Side::Server, Retry::IfReused),
                    _ => e,
                });
            }
        };
        b.clear();
        *out = b;
        w.map_err(|e| WriteError::Io(e).on(Side::Server, Retry::IfReused))?;
        head_res
    }

    /// Read the final response head into `resp` while the request body
    /// (if any) goes out. Returns how the body ended when it ended first
    /// (`None`: no body, or still going).
    #[allow(clippy::too_many_arguments)]
    async fn read_response_head(
        &self,
        server: &I::Stream,
        sbuf: &mut Vec<u8>,
        resp: &mut http::ResponseHead,
        pump: &mut Option<Pump<'_>>,
        cbuf: &mut Vec<u8>,
        out: &mut Vec<u8>,
        sent_at: Instant,
        timer: &mut TimerSlot,
    ) -> Result<Option<Result<(), ProxyError>>, ProxyError> {
        let shared = &self.w.shared;
        let t = &shared.svc.timeouts;
        sbuf.clear();
        // While the body goes out the server may take its time to read
        // it: `timeouts.server` for the head counts from the body's end.
        let body = pump.is_some();
        let deadline = sent_at + if body { FAR } else { t.server };
        let timer = timer_at(timer, deadline);
        let head_fut = read_final_head(
            server,
            sbuf,
            resp,
            shared.limits,
            self.req,
            self.client,
            t.client,
            deadline,
            timer,
        );
        tokio::pin!(head_fut);
        let mut body_res = None;
        loop {
            let Some(p) = pump.as_mut() else {
                if !body {
                    // `deadline` is `timeouts.server` from the request.
                    return head_fut.await.map(|()| body_res);
                }
                let body_end = Instant::now();
                return match timeout_at((body_end + t.server).into(), &mut head_fut).await {
                    Ok(h) => h.map(|()| body_res),
                    Err(_) => Err(ProxyError::server(Kind::Timeout, Retry::Never)),
                };
            };
            let (r, cb, ob) = tokio::select! {
                h = &mut head_fut => return h.map(|()| body_res),
                pumped = p.as_mut() => pumped,
            };
            *pump = None;
            *cbuf = cb;
            *out = ob;
            match r {
                Ok(n) => {
                    shared.stats.sent(self.srv, n);
                    body_res = Some(Ok(()));
                }
                // The client failed (bad chunk, timeout, gone): answer it
                // and close, as before any response.
                Err(e) if e.side == Side::Client => return Err(e),
                // The server took no body for `timeouts.server`: waiting
                // that long again for its head adds nothing.
                Err(
                    e @ ProxyError {
                        kind: Kind::Timeout,
                        ..
                    },
                ) => return Err(e),
                // The server stopped taking the body: it may have
                // answered (and closed), so its response is read on.
                Err(e) => body_res = Some(Err(e)),
            }
        }
    }

    /// After a 101: the rest of the request body, the 101 to the client,
    /// then bytes both ways until both sides end. Returns false (the
    /// connection is the tunnel's).
    #[allow(clippy::too_many_arguments)]
    async fn tunnel(
        &self,
        server: &I::Stream,
        pump: Option<Pump<'_>>,
        cbuf: &mut Vec<u8>,
        out: &mut Vec<u8>,
        sbuf: &[u8],
        resp: &http::ResponseHead,
        log: &mut Log,
    ) -> bool {
        let t = &self.w.shared.svc.timeouts;
        let client = self.client;
        if let Some(p) = pump {
            // The tunnel starts after the request body.
            let (r, cb, ob) = p.await;
            *cbuf = cb;
            *out = ob;
            if r.is_err() {
                log.note = "request body failed before tunnel";
                return false;
            }
        }
        http::encode_response(
            resp,
            BodyKind::None,
            self.req.minor,
            ClientConn::Upgrade,
            out,
        );
        out.extend_from_slice(sbuf);
        log.bytes += out.len() as u64;
        if write(client, out, Instant::now() + t.client).await.is_err() {
            return false;
        }
        if !cbuf.is_empty() {
            let mut early = std::mem::take(cbuf);
            if write(server, &mut early, Instant::now() + t.server)
                .await
                .is_err()
            {
                return false;
            }
        }
        let idle = t.client.max(t.server);
        let (a, b) = futures::join!(tunnel(client, server, idle), tunnel(server, client, idle));
        log.bytes += b;
        let _ = a;
        log.note = "tunnel";
        false
    }

    /// Relay the response body to the client (the request body may still
    /// be going out). Returns whether the client connection stays open
    /// and whether the server connection is fit for the pool (the whole
    /// exchange done, nothing unread, the server keeping it open).
    #[allow(clippy::too_many_arguments)]
    async fn relay_response(
        &self,
        server: &I::Stream,
        mut pump: Option<Pump<'_>>,
        mut body_res: Option<Result<(), ProxyError>>,
        cbuf: &mut Vec<u8>,
        (out, rout, sbuf): (&mut Vec<u8>, &mut Vec<u8>, &mut Vec<u8>),
        resp: &http::ResponseHead,
        (server_timer, client_timer): (&mut TimerSlot, &mut TimerSlot),
        log: &mut Log,
        now: Instant,
    ) -> (bool, bool) {
        let shared = &self.w.shared;
        let t = &shared.svc.timeouts;
        let (client, req, srv) = (self.client, self.req, self.srv);
        let body_out = http::response_body_out(resp, req.minor);
        let client_keep = req.keep_alive
            && body_out != BodyKind::Close
            && !shared.draining.load(Ordering::Relaxed);
        // `out` is the pump's while it runs; the response then goes
        // through `rout`.
        let rbuf: &mut Vec<u8> = if pump.is_some() { rout } else { out };
        rbuf.clear();
        let conn = if client_keep {
            ClientConn::KeepAlive
        } else {
            client.closing();
            ClientConn::Close
        };
        http::encode_response(resp, body_out, req.minor, conn, rbuf);
        if let (Some(v), true) = (&shared.svc.hsts, client.is_tls()) {
            // Unless the server set its own.
            let sts = b"strict-transport-security";
            if !resp.headers().any(|(n, _)| n.eq_ignore_ascii_case(sts)) {
                http::add_header(rbuf, b"Strict-Transport-Security", v.as_bytes());
            }
        }
        let head_bytes = rbuf.len() as u64;
        let relay = async {
            // The server's timer is free now: a request body still going
            // out has its own.
            let server_timer = timer_at(server_timer, now + t.server);
            let client_timer = timer_at(client_timer, now + t.client);
            if resp.body == BodyKind::None {
                write_on(client, rbuf, now + t.client, Some(client_timer))
                    .await
                    .map(|_| 0)
                    .map_err(|e| e.on(Side::Client, Retry::Never))
            } else {
                copy_body(
                    server,
                    sbuf,
                    t.server,
                    client,
                    t.client,
                    BodyDecoder::new(resp.body),
                    BodyEncoder::new(body_out),
                    rbuf,
                    Direction::ServerToClient,
                    (Some(server_timer), Some(client_timer)),
                    now,
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
        let body_bytes = match res {
            Ok(n) => n,
            Err(e) => {
                log.bytes += head_bytes;
                log.note = e.note_in_body();
                client.shutdown(Shutdown::Both);
                return (false, false);
            }
        };
        log.bytes += head_bytes + body_bytes;
        if pumped.is_none() {
            if let Some(p) = pump.take() {
                // The response is complete and the request body is not: a
                // server keeping its connection reads the rest (nginx
                // does), so it goes on; one closing takes no more, and the
                // client connection closes (after draining what the client
                // still sends).
                if !resp.keep_alive {
                    log.note = "response before request body end";
                    return (false, false);
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
                Err(e) => body_res = Some(Err(e)),
            }
        }
        if let Some(Err(e)) = body_res {
            // The response went out whole; the request did not.
            tracing::debug!(client = %log.peer, "request body unfinished: {e:?}");
            log.note = "request body unfinished";
            return (false, false);
        }
        let reusable =
            resp.keep_alive && sbuf.is_empty() && !shared.draining.load(Ordering::Relaxed);
        (client_keep, reusable)
    }
}

/// Read a response head into `head`; returns its length in `buf`.
/// `interim`: an interim response came before this one.
#[allow(clippy::too_many_arguments)]
async fn read_head<S: Stream>(
    s: &S,
    buf: &mut Vec<u8>,
    head: &mut http::ResponseHead,
    limits: HeadLimits,
    method: &str,
    deadline: Instant,
    interim: bool,
    mut timer: Pin<&mut Sleep>,
) -> Result<usize, ProxyError> {
    let bad = |e| ProxyError::server(Kind::BadHead(e), Retry::Never);
    loop {
        if !buf.is_empty() {
            if let Some(n) = http::check_head(buf, limits).map_err(bad)? {
                head.parse_from(&buf[..n], limits, method)
                    .and_then(|()| rules::check_response(head))
                    .map_err(bad)?;
                return Ok(n);
            }
        }
        let r = read_more(s, buf, deadline, Some(timer.as_mut())).await;
        if let Read::Data(_) = r {
            continue;
        }
        // A close or error with no byte of a response (not even an
        // interim one) is what a server closing an idle connection as
        // the request went out looks like: the request may go again on
        // a new connection (if this one was reused). A timeout: the
        // server took the request and is slow; never again.
        let retry = match r {
            Read::Eof | Read::Error(_) if buf.is_empty() && !interim => Retry::IfReused,
            _ => Retry::Never,
        };
        return Err(r.error(Side::Server, retry));
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
    mut timer: Pin<&mut Sleep>,
) -> Result<(), ProxyError> {
    let mut interim = false;
    loop {
        let method = req.method();
        let hl = read_head(
            server,
            sbuf,
            resp,
            limits,
            method,
            deadline,
            interim,
            timer.as_mut(),
        );
        let hl = hl.await?;
        sbuf.drain(..hl);
        if (100..200).contains(&resp.status) && resp.status != 101 {
            interim = true;
            // Interim responses go to HTTP/1.1 clients as they are.
            if req.minor == 1 {
                let mut out = Vec::new();
                http::encode_response(resp, BodyKind::None, 1, ClientConn::KeepAlive, &mut out);
                write(client, &mut out, Instant::now() + client_t)
                    .await
                    .map_err(|e| e.on(Side::Client, Retry::Never))?;
            }
            continue;
        }
        return Ok(());
    }
}

/// Which way a body goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Stream a body from `src` to `dst` through the codecs. `out` may already
/// hold bytes to send first (the head), so small messages go in one write.
/// Returns the body bytes written to `dst`. A failure is never safe to
/// retry: part of the body was consumed.
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
    dir: Direction,
    (mut src_timer, mut dst_timer): (Option<Pin<&mut Sleep>>, Option<Pin<&mut Sleep>>),
    at: Instant,
) -> Result<u64, ProxyError> {
    // `at`, a clock reading of the caller's, times the first wait; each
    // later one reads the clock.
    let mut at = Some(at);
    let mut clock = move || at.take().unwrap_or_else(Instant::now);
    let (src_side, dst_side) = match dir {
        Direction::ClientToServer => (Side::Client, Side::Server),
        Direction::ServerToClient => (Side::Server, Side::Client),
    };
    let bad = |e| ProxyError {
        kind: Kind::BadBody(e),
        side: src_side,
        retry: Retry::Never,
    };
    let dst_fail = |e: WriteError| e.on(dst_side, Retry::Never);
    let mut data: Vec<u8> = Vec::new();
    let mut written: u64 = 0;
    loop {
        if !sbuf.is_empty() && !dec.is_done() {
            let before = out.len();
            let consumed = if enc == BodyEncoder::Raw {
                dec.decode(sbuf, out).map_err(bad)?
            } else {
                data.clear();
                let c = dec.decode(sbuf, &mut data).map_err(bad)?;
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
                write_on(
                    dst,
                    out,
                    clock() + dst_t,
                    dst_timer.as_mut().map(|t| t.as_mut()),
                )
                .await
                .map_err(dst_fail)?;
            }
            return Ok(written);
        }
        if !out.is_empty() {
            write_on(
                dst,
                out,
                clock() + dst_t,
                dst_timer.as_mut().map(|t| t.as_mut()),
            )
            .await
            .map_err(dst_fail)?;
        }
        match read_more(
            src,
            sbuf,
            clock() + src_t,
            src_timer.as_mut().map(|t| t.as_mut()),
        )
        .await
        {
            Read::Eof => dec.on_eof().map_err(bad)?,
            Read::Data(_) => {}
            r => return Err(r.error(src_side, Retry::Never)),
        }
    }
}

/// Copy one direction of an upgraded connection until EOF, error or idle
/// timeout, then close the write side. Returns bytes copied.
async fn tunnel<A: Stream, B: Stream>(src: &A, dst: &B, idle: Duration) -> u64 {
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut total = 0u64;
    loop {
        match read_more(src, &mut buf, Instant::now() + idle, None).await {
            Read::Eof => break,
            Read::Data(n) => {
                total += n as u64;
                if write(dst, &mut buf, Instant::now() + idle).await.is_err() {
                    src.shutdown(Shutdown::Both);
                    break;
                }
            }
            Read::Error(_) | Read::Timeout => {
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

#[cfg(test)]
mod tests;
